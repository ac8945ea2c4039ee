"""`dhcp_release` (Debian's dnsmasq-utils): make a network's dnsmasq drop a lease now, in the host's network
namespace, as if the client had released it.

dnsmasq keeps a removed VM's lease until it expires (an hour on libvirt's networks) and will not give its address
to another MAC meanwhile, even one reserved for it: that VM would get some other address, after ~3 s of dnsmasq
pinging it. libvirt sees a new lease only seconds after the guest got it, so its lease list cannot warn of that.
"""

from __future__ import annotations

import shutil

from kvmhub.errors import KvmhubError
from kvmhub.tools.iproute import run_in_netns

PROGRAM = "dhcp_release"
PACKAGE = "dnsmasq-utils"


def available() -> bool:
    return shutil.which(PROGRAM) is not None


def release(bridge: str, ip: str, mac: str) -> bool:
    """Ask the dnsmasq serving ``bridge`` to drop the lease of ``ip`` held by ``mac``; whether it was asked.

    Best effort: a lease that does not exist is nothing to drop, and without the program (or its namespace) the
    lease ages out as it would have."""
    if not available():
        return False
    try:
        done = run_in_netns([PROGRAM, bridge, ip, mac], timeout=10.0)
    except KvmhubError:
        return False
    return done.returncode == 0
