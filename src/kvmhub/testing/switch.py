"""A test switch: a bridge in its own network namespace that joins test hosts by veth pairs."""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

from kvmhub.errors import HostProblem
from kvmhub.testing import _procs
from kvmhub.testing._owned import Owned, check

if TYPE_CHECKING:
    from kvmhub.testing.testhost import TestHost

__all__ = ["TestSwitch"]


class TestSwitch(Owned):
    """A bridge ``br0`` in its own network namespace that joins :class:`TestHost` instances.

    Each host attached gets a veth pair (``eth0`` inside the host, ``v<host id>`` on the bridge) and the next
    address of ``subnet``. The subnet is reachable only inside these namespaces.
    """

    __test__ = False  # not a pytest test class despite the name
    kind = "switch"

    def __init__(self, subnet: str = "10.254.7.0/24", *, base: Path | None = None) -> None:
        super().__init__(base, None)
        self.network = ipaddress.IPv4Network(subnet)
        self._addresses = self.network.hosts()
        self._lock = threading.Lock()

    def start(self, timeout: float = 30.0) -> Self:
        """Create the switch namespace and bridge. Raises HostProblem on failure."""
        _procs.cleanup_stale(self.base)
        self._claim_dir()
        try:
            deadline = time.monotonic() + timeout
            self._launch(["--net"], ["switch", str(self.dir)], deadline).expect("READY", deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def allocate(self) -> ipaddress.IPv4Address:
        """The next free address on the switch's subnet."""
        with self._lock:
            try:
                return next(self._addresses)
            except StopIteration:
                raise HostProblem(f"switch {self.id}: subnet {self.network} is full") from None

    def attach(self, host: TestHost, address: ipaddress.IPv4Address) -> None:
        """Connect ``host`` (its holder must be running) to the bridge with ``address`` on its ``eth0``."""
        port = f"v{host.id}"[:15]
        in_switch = ["nsenter", f"--target={self.holder_pid}", "--net", "--"]
        peer = ["peer", "name", "eth0", "netns", str(host.holder_pid)]
        check([*in_switch, "ip", "link", "add", port, "type", "veth", *peer])
        check([*in_switch, "ip", "link", "set", port, "master", "br0", "up"])
        in_host = ["nsenter", f"--target={host.holder_pid}", "--net", "--"]
        check([*in_host, "ip", "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0"])
        check([*in_host, "ip", "link", "set", "eth0", "up"])

    def stop(self) -> None:
        """Kill the switch namespace's holder and remove its dir; safe to call twice."""
        if self._lock_fd is None:
            return
        self._teardown()
