"""iproute2 (`ip`) and `ping`, run with argument lists and JSON output in the host's network namespace.

Also the device state read from it: :class:`Link`, :class:`Address`, :class:`Route`, :func:`read_state`.

The host is the machine kvmhub runs on, or the private test host named by ``KVMHUB_HOST_ROOT=/proc/PID/root``:
then every command runs inside that process's network namespace through ``nsenter --target PID --net``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvmhub.errors import HostProblem, NotFound, OperationFailed, OperationTimeout
from kvmhub.hv import host_root

__all__ = [
    "Address",
    "IpFailed",
    "Link",
    "NetState",
    "Route",
    "in_host_netns",
    "ip",
    "ip_json",
    "links",
    "netns_pid",
    "ping",
    "read_state",
    "run_in_netns",
]

IP_TIMEOUT = 15.0

# Messages iproute2 prints when the object of a `del` (or the device named) is already gone.
_GONE = ("No such process", "Cannot find device", "Cannot assign requested address", "does not exist")
_FOREVER = 4294967295
_ADDR_FLAGS = ("noprefixroute", "mngtmpaddr", "home", "nodad")
_PACKAGES = {"ip": "iproute2", "nsenter": "util-linux", "ping": "iputils-ping"}


class IpFailed(OperationFailed):
    """An `ip` command was refused; ``stderr`` holds what iproute2 said."""

    def __init__(self, message: str, *, stderr: str, hint: str | None = None) -> None:
        super().__init__(message, original=stderr, hint=hint)
        self.stderr = stderr

    @property
    def gone(self) -> bool:
        """True when the command failed because its object does not exist (a `del` of something absent)."""
        return any(marker in self.stderr for marker in _GONE)

    @property
    def exists(self) -> bool:
        """True when the command failed because its object is already there (an `add` of something present)."""
        return "File exists" in self.stderr


def netns_pid() -> int | None:
    """The pid whose network namespace is the host's (from ``KVMHUB_HOST_ROOT=/proc/PID/root``), else None."""
    match = re.fullmatch(r"/proc/(\d+)/root", host_root())
    return int(match.group(1)) if match else None


def in_host_netns(argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so it runs in the host's network namespace (unchanged for this machine's own)."""
    pid = netns_pid()
    if pid is None:
        return list(argv)
    return ["nsenter", f"--target={pid}", "--net", "--", *argv]


def run_in_netns(argv: Sequence[str], *, timeout: float = IP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command in the host's network namespace and capture its output (no exit-code check).

    Raises HostProblem when the program (or nsenter) is not installed, OperationTimeout when it hangs.
    """
    full = in_host_netns(argv)
    try:
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        missing = exc.filename or full[0]
        package = _PACKAGES.get(str(missing), str(missing))
        raise HostProblem(f"{missing} is not installed", hint=f"`apt-get install {package}`") from None
    except subprocess.TimeoutExpired:
        raise OperationTimeout(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None


def ip(args: Sequence[str], *, timeout: float = IP_TIMEOUT) -> str:
    """Run ``ip ARGS...`` in the host's network namespace and return its stdout.

    Raises HostProblem when not permitted (not root) or iproute2 is missing; IpFailed for any other refusal.
    """
    argv = ["ip", *args]
    proc = run_in_netns(argv, timeout=timeout)
    if proc.returncode == 0:
        return proc.stdout
    said = (proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}"
    if "Operation not permitted" in said or "Permission denied" in said:
        raise HostProblem(
            f"`{' '.join(argv)}` was refused",
            cause="changing the host's network needs root (CAP_NET_ADMIN)",
            hint="run kvmhub as root (sudo)",
            original=said,
        )
    raise IpFailed(f"`{' '.join(argv)}` failed", stderr=said)


def ip_json(args: Sequence[str], *, timeout: float = IP_TIMEOUT) -> list[dict[str, Any]]:
    """``ip -json ARGS...`` parsed (a list of objects; empty when iproute2 prints nothing)."""
    text = ip(["-json", *args], timeout=timeout).strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HostProblem(
            f"`ip -json {' '.join(args)}` printed no valid JSON",
            cause="an iproute2 older than 4.13 (no -json support)",
            hint="`apt-get install iproute2` from a current release",
            original=text[:200],
        ) from exc
    return [x for x in data if isinstance(x, dict)] if isinstance(data, list) else []


def ping(address: str, *, wait: float = 1.0) -> bool:
    """True when ``address`` answers one ICMP echo within ``wait`` seconds (from the host's namespace)."""
    seconds = str(max(1, round(wait)))
    proc = run_in_netns(["ping", "-n", "-q", "-c", "1", "-W", seconds, address], timeout=wait + 5)
    return proc.returncode == 0


# -- device state ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """One IPv4/IPv6 address of a device, as `ip -j addr` shows it."""

    family: str
    local: str
    prefixlen: int
    broadcast: str | None = None
    peer: str | None = None
    label: str | None = None
    valid_lft: int | None = None
    preferred_lft: int | None = None
    flags: tuple[str, ...] = ()
    secondary: bool = False

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefixlen}"

    @property
    def key(self) -> tuple[str, str, int]:
        """What identifies the address when comparing states."""
        return (self.family, self.local, self.prefixlen)

    @property
    def dynamic(self) -> bool:
        """True when the address has a finite lifetime (DHCP or SLAAC)."""
        return self.valid_lft is not None

    def add_args(self, dev: str) -> list[str]:
        """`ip` arguments that put this address on ``dev``."""
        fam = "-4" if self.family == "inet" else "-6"
        args = [fam, "addr", "add", self.cidr]
        if self.peer:
            args += ["peer", self.peer]
        if self.broadcast:
            args += ["broadcast", self.broadcast]
        if self.label and ":" in self.label:
            # an alias label must start with its device's name
            args += ["label", f"{dev}:{self.label.split(':', 1)[1]}"[:15]]
        if self.valid_lft is not None:
            args += ["valid_lft", str(self.valid_lft)]
            args += ["preferred_lft", str(self.preferred_lft if self.preferred_lft is not None else "forever")]
        return [*args, *self.flags, "dev", dev]

    def del_args(self, dev: str) -> list[str]:
        """`ip` arguments that remove this address from ``dev``."""
        fam = "-4" if self.family == "inet" else "-6"
        return [fam, "addr", "del", self.cidr, "dev", dev]

    @classmethod
    def from_json(cls, info: dict[str, Any]) -> Address:
        """Build from one `addr_info` entry of `ip -j addr`."""
        valid = info.get("valid_life_time")
        preferred = info.get("preferred_life_time")
        peer = info.get("address") if info.get("address") not in (None, info.get("local")) else None
        return cls(
            family=str(info["family"]),
            local=str(info["local"]),
            prefixlen=int(info["prefixlen"]),
            broadcast=info.get("broadcast"),
            peer=peer,
            label=info.get("label"),
            valid_lft=None if valid in (None, _FOREVER) else int(valid),
            preferred_lft=None if preferred in (None, _FOREVER) else int(preferred),
            flags=tuple(f for f in _ADDR_FLAGS if info.get(f)),
            secondary=bool(info.get("secondary")),
        )


@dataclass(frozen=True)
class Route:
    """One route through a device, as `ip -j route show table all dev DEV` shows it (the device left out)."""

    family: str
    dst: str
    gateway: str | None = None
    table: str | None = None
    metric: int | None = None
    protocol: str | None = None
    scope: str | None = None
    prefsrc: str | None = None
    onlink: bool = False
    pref: str | None = None

    def args(self, verb: str, dev: str) -> list[str]:
        """`ip` arguments for ``verb`` (add, replace, del) of this route through ``dev``."""
        args = [self.family, "route", verb, self.dst]
        if self.gateway:
            args += ["via", self.gateway]
        args += ["dev", dev]
        if self.table:
            args += ["table", self.table]
        if self.metric is not None:
            args += ["metric", str(self.metric)]
        if verb == "del":
            return args
        if self.protocol:
            args += ["proto", self.protocol]
        if self.scope:
            args += ["scope", self.scope]
        if self.prefsrc:
            args += ["src", self.prefsrc]
        if self.onlink:
            args.append("onlink")
        if self.pref:
            args += ["pref", self.pref]
        return args

    def describe(self) -> str:
        """Short human form, e.g. ``default via 10.0.0.1`` or ``10.9.0.0/16 via 10.0.0.1 table 100``."""
        text = self.dst + (f" via {self.gateway}" if self.gateway else "")
        return text + (f" table {self.table}" if self.table else "")

    @classmethod
    def from_json(cls, family: str, info: dict[str, Any]) -> Route:
        """Build from one entry of `ip -j route` (``family`` is ``-4`` or ``-6``)."""
        metric = info.get("metric")
        return cls(
            family=family,
            dst=str(info["dst"]),
            gateway=info.get("gateway"),
            table=info.get("table"),
            metric=None if metric is None else int(metric),
            protocol=info.get("protocol"),
            scope=info.get("scope"),
            prefsrc=info.get("prefsrc"),
            onlink="onlink" in info.get("flags", []),
            pref=info.get("pref"),
        )


@dataclass(frozen=True)
class Link:
    """A network device's link facts."""

    name: str
    up: bool
    kind: str | None
    master: str | None
    mac: str | None
    mtu: int | None
    loopback: bool = False

    @classmethod
    def from_json(cls, info: dict[str, Any]) -> Link:
        """Build from one entry of `ip -j -d link show`."""
        linkinfo = info.get("linkinfo") or {}
        return cls(
            name=str(info["ifname"]),
            up="UP" in info.get("flags", []),
            kind=linkinfo.get("info_kind"),
            master=info.get("master"),
            mac=info.get("address"),
            mtu=info.get("mtu"),
            loopback=info.get("link_type") == "loopback",
        )


@dataclass(frozen=True)
class NetState:
    """Everything create/rm move or must restore for one device: its link, addresses and routes."""

    link: Link
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    unmovable: tuple[str, ...] = ()

    def default_gateway(self) -> str | None:
        """The gateway of the main table's default route (IPv4 first), if any."""
        for family in ("-4", "-6"):
            for route in self.routes:
                if route.family == family and route.dst == "default" and route.gateway and not route.table:
                    return route.gateway
        return None

    def differences(self, other: NetState) -> list[str]:
        """What ``other`` lacks or has on top of this state (empty when equal where it matters)."""
        diff = []
        mine, theirs = {a.key for a in self.addresses}, {a.key for a in other.addresses}
        diff += [f"address {f[1]}/{f[2]} missing" for f in sorted(mine - theirs)]
        diff += [f"address {f[1]}/{f[2]} extra" for f in sorted(theirs - mine)]
        mine_r, theirs_r = {_route_key(r) for r in self.routes}, {_route_key(r) for r in other.routes}
        diff += [f"route {' '.join(k)} missing" for k in sorted(mine_r - theirs_r)]
        diff += [f"route {' '.join(k)} extra" for k in sorted(theirs_r - mine_r)]
        if self.link.up != other.link.up:
            diff.append(f"link {'up' if self.link.up else 'down'} before, {'up' if other.link.up else 'down'} now")
        if self.link.master != other.link.master:
            diff.append(f"port of {self.link.master or 'no bridge'} before, of {other.link.master or 'none'} now")
        return diff


def _route_key(route: Route) -> tuple[str, ...]:
    return (route.family, route.dst, route.gateway or "-", route.table or "main", str(route.metric or 0))


def links() -> dict[str, Link]:
    """Every network device of the host, by name."""
    return {link.name: link for link in map(Link.from_json, ip_json(["-d", "link", "show"]))}


def read_state(dev: str) -> NetState:
    """Read a device's link, addresses (not IPv6 link-local) and routes (not the kernel's own) from the host."""
    shown = ip_json(["-d", "addr", "show", "dev", dev])
    if not shown:
        raise NotFound(f"there is no network device {dev!r}")
    addresses = tuple(
        Address.from_json(a)
        for a in shown[0].get("addr_info", [])
        if "local" in a and not (a.get("family") == "inet6" and a.get("scope") == "link")
    )
    routes: list[Route] = []
    unmovable: list[str] = []
    for family in ("-4", "-6"):
        for info in ip_json([family, "route", "show", "table", "all", "dev", dev]):
            if info.get("table") == "local" or info.get("type", "unicast") != "unicast":
                continue
            if info.get("protocol") == "kernel":
                continue  # made by the kernel for an address; it follows the address
            if "nexthops" in info or "nhid" in info or "dst" not in info:
                unmovable.append(str(info.get("dst", info)))
                continue
            routes.append(Route.from_json(family, info))
    return NetState(Link.from_json(shown[0]), addresses, tuple(routes), tuple(unmovable))
