"""The SSH data path of `kvmhub cp`: which guest addresses it may reach, and the command line the guest runs."""

from __future__ import annotations

import shlex
from pathlib import Path

from kvmhub.services.vm.guest_ssh_files import _remote, directly_reached

# a bridge's network (10.79.0.0/24), a private one with a gateway, and the default route
ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
virbr1\t00004F0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0000100A\t0100A8C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
down0\t0000500A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_only_addresses_on_an_attached_network_are_reached(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    assert directly_reached("10.79.0.2", routes)
    assert not directly_reached("10.79.1.2", routes)  # beside it, through the default route
    assert not directly_reached("10.16.3.4", routes)  # through a gateway
    assert not directly_reached("10.80.0.9", routes)  # a route that is down
    assert not directly_reached("8.8.8.8", routes)
    assert not directly_reached("fe80::1", routes)
    assert not directly_reached("10.79.0.2", tmp_path / "missing")


def test_the_guest_runs_the_script_with_the_path_as_one_word() -> None:
    hostile = "/tmp/a b; rm -rf / $(reboot) 'q\"\n"
    words = shlex.split(_remote("root", 'exec cat > "$1"', hostile))
    assert words == ["sh", "-c", 'exec cat > "$1"', "kvmhub", hostile]
    assert shlex.split(_remote("debian", "true", "/x"))[:3] == ["sudo", "-n", "sh"]
