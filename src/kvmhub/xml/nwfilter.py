"""``<filter>``: libvirt network filters (nwfilter) kvmhub defines for per-VM firewalls."""

from __future__ import annotations

import re

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import make, serialize, sub

BUILTIN = "clean-traffic"
_ALLOW = re.compile(r"^allow:(\d{1,5}(?:-\d{1,5})?(?:,\d{1,5}(?:-\d{1,5})?)*)(?:/(tcp|udp))?$")

__all__ = ["BUILTIN", "allow_filter_xml", "filter_name", "parse_policy"]


def parse_policy(policy: str) -> tuple[str, list[tuple[int, int]], str] | None:
    """'clean-traffic' -> ('clean-traffic', [], ''); 'allow:22,80/tcp' -> ('allow', [(22,22),(80,80)], 'tcp');
    'off' -> None. Raises InvalidInput naming the accepted forms."""
    if policy == "off":
        return None
    if policy == BUILTIN:
        return (BUILTIN, [], "")
    m = _ALLOW.match(policy)
    if not m:
        raise InvalidInput(
            f"invalid firewall policy {policy!r}",
            hint="clean-traffic | allow:22,80/tcp | allow:5000-5010/udp | off",
        )
    ports: list[tuple[int, int]] = []
    for part in m.group(1).split(","):
        lo, _, hi = part.partition("-")
        start, end = int(lo), int(hi or lo)
        if not (1 <= start <= end <= 65535):
            raise InvalidInput(f"port range {part} is out of range", hint="1 to 65535, low-high")
        ports.append((start, end))
    return ("allow", ports, m.group(2) or "tcp")


def filter_name(ports: list[tuple[int, int]], proto: str) -> str:
    """A stable name for an allow-list filter, e.g. kvmhub-allow-tcp-22-80-5000_5010."""
    return "kvmhub-allow-" + proto + "-" + "-".join(str(a) if a == b else f"{a}_{b}" for a, b in ports)


def allow_filter_xml(ports: list[tuple[int, int]], proto: str) -> str:
    """A filter that keeps clean-traffic's anti-spoofing, lets the guest send anything, and lets in only
    replies, DHCP, ICMP errors, and new connections to the listed ports."""
    root = make("filter", {"name": filter_name(ports, proto), "chain": "root"})
    sub(root, "filterref", {"filter": BUILTIN})
    # replies to what the guest started, both ways
    for direction in ("in", "out"):
        rule = sub(root, "rule", {"action": "accept", "direction": direction, "priority": "100"})
        sub(rule, "all", {"state": "ESTABLISHED,RELATED"})
    out = sub(root, "rule", {"action": "accept", "direction": "out", "priority": "200"})
    sub(out, "all", {"state": "NEW"})
    dhcp = sub(root, "rule", {"action": "accept", "direction": "in", "priority": "200"})
    sub(dhcp, "udp", {"srcportstart": "67", "dstportstart": "68"})
    for start, end in ports:
        rule = sub(root, "rule", {"action": "accept", "direction": "in", "priority": "300"})
        attrs = {"dstportstart": str(start), "state": "NEW"}
        if end != start:
            attrs["dstportend"] = str(end)
        sub(rule, proto, attrs)
    drop = sub(root, "rule", {"action": "drop", "direction": "in", "priority": "1000"})
    sub(drop, "all")
    return serialize(root)
