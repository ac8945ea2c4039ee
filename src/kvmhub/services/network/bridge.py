"""A host bridge in one command: `kvmhub net bridge create BR --from DEV` and `kvmhub net bridge rm BR`.

create moves DEV's IPv4/IPv6 addresses and routes (default route included) onto a new Linux bridge BR with DEV
as its port, then checks the host still reaches its default gateway (or ``check_ip``). When the check fails
within the timeout, or on any error or Ctrl-C, every step is undone in reverse and DEV is back exactly as it
was (addresses, routes, link states). rm moves them back onto the bridge's port and deletes the bridge, with
the same check and rollback.

It acts on the host's network namespace (see :mod:`kvmhub.tools.iproute`); the change is not persistent
across reboots: the host's own network configuration (ifupdown, netplan, NetworkManager) makes it permanent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

from kvmhub.errors import Conflict, HostProblem, InvalidInput, KvmhubError, NotFound, OperationTimeout
from kvmhub.models.events import Event, UndoEvent
from kvmhub.models.network import BridgeResult
from kvmhub.reporting import QUIET, Reporter
from kvmhub.tools import iproute
from kvmhub.tools.iproute import IpFailed, NetState, Route, read_state
from kvmhub.undo import Undo

__all__ = ["DEFAULT_TIMEOUT", "BridgeResult", "create", "remove"]

DEFAULT_TIMEOUT = 20.0
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# Port kinds that are VMs' NICs, not a host uplink.
_VM_PORT_KINDS = {"tun", "tap", "macvtap"}


def _quiet(_msg: str) -> None:
    """Default progress callback: say nothing."""


# -- steps ------------------------------------------------------------------------------------------------------


def _ip_ignore_gone(args: list[str]) -> None:
    try:
        iproute.ip(args)
    except IpFailed as exc:
        if not exc.gone:
            raise


def _put_routes(routes: tuple[Route, ...], dev: str, verb: str) -> None:
    """Add routes through ``dev``; routes without a gateway first, retried while any succeeds (dependencies)."""
    pending = sorted(routes, key=lambda r: r.gateway is not None)
    while pending:
        failed: list[tuple[Route, IpFailed]] = []
        for route in pending:
            try:
                iproute.ip(route.args(verb, dev))
            except IpFailed as exc:
                if not exc.exists:
                    failed.append((route, exc))
        if len(failed) == len(pending):
            raise failed[0][1]
        pending = [route for route, _ in failed]


def _set_link(dev: str, up: bool) -> None:
    iproute.ip(["link", "set", "dev", dev, "up" if up else "down"])


def _move(state: NetState, to: str, undo: Undo, report: Reporter) -> None:
    """Move ``state``'s addresses and routes from its device onto ``to``, each step registering its undo."""
    src = state.link.name
    # Registered first so it runs last, once the addresses (the routes' gateways) are back.
    undo.add(f"restore the routes of {src}", partial(_put_routes, state.routes, src, "replace"))
    for addr in sorted(state.addresses, key=lambda a: not a.secondary):  # secondaries first: kept by primaries
        iproute.ip(addr.del_args(src))
        undo.add(f"put {addr.cidr} back on {src}", partial(iproute.ip, addr.add_args(src)))
    for addr in state.addresses:
        iproute.ip(addr.add_args(to))
        undo.add(f"remove {addr.cidr} from {to}", partial(_ip_ignore_gone, addr.del_args(to)))
        report.phase(f"moved {addr.cidr} from {src} to {to}")
    for route in sorted(state.routes, key=lambda r: r.gateway is not None):
        _ip_ignore_gone(route.args("del", src))  # the kernel dropped most with their addresses
        _put_routes((route,), to, "add")
        undo.add(f"remove route {route.describe()} from {to}", partial(_ip_ignore_gone, route.args("del", to)))
        report.phase(f"moved route {route.describe()} from {src} to {to}")


def _wait_answer(target: str, timeout: float, report: Reporter) -> float | None:
    """Seconds until ``target`` answered a ping, or None when it did not within ``timeout``."""
    start = time.monotonic()
    report.phase(f"checking that {target} answers (up to {timeout:.0f} s)")
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            return None
        tried = time.monotonic()
        if iproute.ping(target, wait=min(1.0, left)):
            return time.monotonic() - start
        # an immediate "unreachable" must not turn into a busy loop
        time.sleep(max(0.0, min(0.3 - (time.monotonic() - tried), left)))


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """Hold off Ctrl-C (here and in the `ip` children) while a rollback runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _rolled_back(undo: Undo, befores: list[NetState], gone: str | None) -> tuple[str, list[str]]:
    """Roll back, then compare the devices with ``befores``; returns (summary, problems)."""
    with _no_sigint():
        undo.rollback()
    problems = list(undo.failures)
    for before in befores:
        try:
            problems += [f"{before.link.name}: {d}" for d in before.differences(read_state(before.link.name))]
        except KvmhubError as exc:
            problems.append(f"could not read {before.link.name} back: {exc.message}")
    try:
        if gone is not None and gone in iproute.links():
            problems.append(f"{gone} still exists")
    except KvmhubError as exc:
        problems.append(f"could not list the host's devices: {exc.message}")
    dev = befores[0].link.name
    if problems:
        return f"the rollback of {dev} is incomplete", problems
    tail = f", {gone} removed" if gone else ""
    return f"rolled back: {dev} has its addresses and routes again{tail}", []


def _transaction(
    befores: list[NetState],
    remove_on_failure: str | None,
    target: str | None,
    timeout: float,
    steps: Callable[[Undo], None],
    report: Reporter,
) -> float:
    """Run ``steps`` then the connectivity check; on failure, error or Ctrl-C, undo all and raise why.

    ``befores`` are the states the rollback must restore (the first one holds the addresses before the change).
    """
    # a link-local target is scoped to the device that holds the addresses before the change
    before = befores[0]
    if target is None:
        answered_before = False
    else:
        answered_before = iproute.ping(f"{target.split('%')[0]}%{before.link.name}" if "%" in target else target)
    undone: list[str] = []

    def sink(event: Event) -> None:
        if isinstance(event, UndoEvent):
            undone.append(event.step)
        report.emit(event)

    undo = Undo(report=Reporter(sink, report.cancel))
    try:
        steps(undo)
        seconds = 0.0 if target is None else _wait_answer(target, timeout, report)
        if seconds is None:
            raise OperationTimeout(
                f"connectivity check failed: {target} did not answer within {timeout:.0f} s after the change",
                cause="the uplink does not pass traffic through the bridge"
                if answered_before
                else f"{target} did not answer before the change either: it may not answer ping at all",
                hint="check the cable/switch port and the address; pass {opt:check_ip} ADDR with an address that "
                "answers ping, or a longer {opt:timeout}",
            )
        undo.success()
        return seconds
    except BaseException as exc:
        summary, problems = _rolled_back(undo, befores, remove_on_failure)
        if not undone and not problems:
            summary = "nothing was changed"
        what = exc.message if isinstance(exc, KvmhubError) else (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        if problems:
            raise HostProblem(
                f"{what}\n{summary}",
                cause="; ".join(problems),
                hint=f"compare `ip addr show dev {before.link.name}` and `ip route` with what was there",
            ) from exc
        if isinstance(exc, KvmhubError):
            exc.message = f"{exc.message}\n{summary}"
            exc.args = (exc.message,)
            raise
        if isinstance(exc, KeyboardInterrupt):
            report.phase(f"interrupted: {summary}")
            raise
        raise HostProblem(f"{what}\n{summary}") from exc


# -- checks -----------------------------------------------------------------------------------------------------


def _check_ifname(name: str, what: str) -> None:
    if not _IFNAME.fullmatch(name) or name in {".", ".."}:
        raise InvalidInput(
            f"invalid {what} name {name!r}",
            cause="a Linux device name is 1-15 letters, digits, '_', '.' or '-'",
            hint="for example br0",
        )


def _target(state: NetState, check_ip: str | None, dev: str, timeout: float) -> str | None:
    """The address the connectivity check pings (a link-local one scoped to ``dev``); None: nothing to lose."""
    if timeout <= 0:
        raise InvalidInput(f"invalid {{opt:timeout}} {timeout:g}", hint="a number of seconds above 0, e.g. 20")
    if check_ip is None and not state.addresses and not state.routes:
        return None  # a bare uplink: the host reaches nothing through it that could be lost
    address = check_ip or state.default_gateway()
    if address is None:
        raise InvalidInput(
            f"{state.link.name} has no default route, so there is no gateway to check connectivity with",
            hint="pass {opt:check_ip} ADDR: an address that answers ping once the bridge is up",
        )
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput(f"invalid {{opt:check_ip}} {address!r}", hint="an IPv4 or IPv6 address") from None
    return f"{parsed}%{dev}" if parsed.is_link_local and parsed.version == 6 else str(parsed)


def _refuse_unmovable(state: NetState) -> None:
    if state.unmovable:
        raise InvalidInput(
            f"{state.link.name} carries multipath or nexthop-object routes kvmhub does not move: "
            + ", ".join(state.unmovable),
            hint="remove them first and re-add them on the bridge afterwards",
        )


def _warnings(state: NetState, dev: str, bridge: str) -> list[str]:
    notes = []
    dynamic = [a.cidr for a in state.addresses if a.dynamic]
    if dynamic:
        notes.append(
            f"{', '.join(dynamic)} on {dev} came from DHCP/SLAAC: renewals now have to happen on {bridge}; "
            f"point the host's network configuration at {bridge}"
        )
    return notes


# -- the verbs ----------------------------------------------------------------------------------------------------


def create(
    bridge: str,
    dev: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check_ip: str | None = None,
    report: Reporter = QUIET,
) -> BridgeResult:
    """Make bridge ``bridge`` with ``dev`` as its port, moving ``dev``'s addresses and routes onto it.

    Then pings the default gateway (or ``check_ip``) for up to ``timeout`` seconds. When that fails, or on any
    error or Ctrl-C, everything is rolled back and the error says so.

    Raises InvalidInput (no such device: names the ones there are; bad name; nothing to check against),
    Conflict (the bridge name is taken, ``dev`` is already a bridge port), OperationTimeout (the check failed;
    rolled back), HostProblem (not root, iproute2 missing, or a rollback that could not finish).
    """
    _check_ifname(bridge, "bridge")
    _check_ifname(dev, "device")
    links = iproute.links()
    if dev not in links:
        raise InvalidInput(
            f"there is no network device {dev!r} on the host",
            cause=f"the host has: {', '.join(sorted(links))}",
            hint="pass one of those to {opt:from} (`ip link` lists them)",
        )
    if bridge in links:
        raise Conflict(
            f"a network device named {bridge!r} already exists on the host",
            hint=f"pick another name; if it is a bridge already, use it: "
            f"{{cmd:net create NAME --mode bridge --bridge {bridge}}}", code="name.taken",
        )
    link = links[dev]
    if link.loopback:
        raise InvalidInput(f"{dev} is the loopback device", hint="pass the host's uplink NIC, e.g. eth0")
    if link.kind == "bridge":
        raise InvalidInput(
            f"{dev} is itself a bridge",
            hint=f"use it as it is: {{cmd:net create NAME --mode bridge --bridge {dev}}}",
        )
    if link.master:
        raise Conflict(
            f"{dev} is already a port of {link.master}",
            hint=f"use {link.master}: {{cmd:net create NAME --mode bridge --bridge {link.master}}}, "
            f"or release it first with `ip link set {dev} nomaster`",
        )
    before = read_state(dev)
    _refuse_unmovable(before)
    target = _target(before, check_ip, bridge, timeout)

    def steps(undo: Undo) -> None:
        iproute.ip(["link", "add", "name", bridge, "type", "bridge", "forward_delay", "0"])
        undo.add(f"delete {bridge}", lambda: _ip_ignore_gone(["link", "del", "dev", bridge]))
        settings = []
        if link.mac:  # the host keeps its MAC: DHCP reservations and neighbours' ARP caches stay right
            settings += ["address", link.mac]
        if link.mtu:
            settings += ["mtu", str(link.mtu)]
        iproute.ip(["link", "set", "dev", bridge, *settings, "up"])
        report.phase(f"created bridge {bridge}")
        undo.add(f"set {dev} {'up' if link.up else 'down'}", lambda: _set_link(dev, link.up))
        _move(before, bridge, undo, report)
        iproute.ip(["link", "set", "dev", dev, "master", bridge, "up"])
        undo.add(f"release {dev} from {bridge}", lambda: iproute.ip(["link", "set", "dev", dev, "nomaster"]))
        report.phase(f"{dev} is now a port of {bridge}")

    seconds = _transaction([before], bridge, target, timeout, steps, report)
    return BridgeResult(
        bridge=bridge,
        dev=dev,
        addresses=[a.cidr for a in before.addresses],
        routes=[r.describe() for r in before.routes],
        checked=target or "",
        seconds=seconds,
        warnings=_warnings(before, dev, bridge),
    )


def remove(
    bridge: str,
    *,
    to: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check_ip: str | None = None,
    report: Reporter = QUIET,
) -> BridgeResult:
    """Give ``bridge``'s addresses and routes back to its port (or ``to``) and delete the bridge.

    The same connectivity check and rollback as :func:`create` guard the change; the bridge is deleted only
    once the check passed. Refused while VMs' NICs are still plugged into it.

    Raises NotFound (no such bridge), InvalidInput (not a bridge; no single port to give the addresses to),
    Conflict (VMs or other ports still on it), OperationTimeout (check failed; rolled back), HostProblem.
    """
    _check_ifname(bridge, "bridge")
    links = iproute.links()
    if bridge not in links:
        bridges = sorted(n for n, x in links.items() if x.kind == "bridge")
        raise NotFound(
            f"there is no bridge {bridge!r} on the host",
            cause=f"its bridges: {', '.join(bridges)}" if bridges else "the host has no bridge",
        )
    if links[bridge].kind != "bridge":
        raise InvalidInput(f"{bridge} is not a bridge (it is a {links[bridge].kind or 'plain'} device)")
    ports = sorted(n for n, x in links.items() if x.master == bridge)
    vm_ports = [p for p in ports if links[p].kind in _VM_PORT_KINDS]
    if vm_ports:
        raise Conflict(
            f"VMs are still plugged into {bridge}: {', '.join(vm_ports)}",
            hint="stop those VMs or move their NICs to another network first ({cmd:net ls} shows which)",
        )
    if to is None:
        if len(ports) != 1:
            raise InvalidInput(
                f"{bridge} has {'no port' if not ports else 'ports ' + ', '.join(ports)}: "
                "say which device gets its addresses back",
                hint=f"{{cmd:net bridge rm {bridge} --to DEV}}",
            )
        to = ports[0]
    _check_ifname(to, "device")
    if to not in links:
        raise InvalidInput(f"there is no network device {to!r} on the host",
                           cause=f"the host has: {', '.join(sorted(links))}")
    others = [p for p in ports if p != to]
    if others:
        raise Conflict(f"{bridge} has other ports besides {to}: {', '.join(others)}",
                       hint="release them first: `ip link set DEV nomaster`")
    if links[to].master not in (None, bridge):
        raise Conflict(f"{to} is a port of {links[to].master}", hint=f"release it: `ip link set {to} nomaster`")
    dev: str = to
    before = read_state(bridge)
    _refuse_unmovable(before)
    target = _target(before, check_ip, dev, timeout)
    was_port = links[dev].master == bridge
    dev_up = links[dev].up

    def steps(undo: Undo) -> None:
        undo.add(f"set {dev} {'up' if dev_up else 'down'}", lambda: _set_link(dev, dev_up))
        if was_port:
            iproute.ip(["link", "set", "dev", dev, "nomaster"])
            undo.add(f"make {dev} a port of {bridge} again",
                     lambda: iproute.ip(["link", "set", "dev", dev, "master", bridge]))
            report.phase(f"released {dev} from {bridge}")
        _set_link(dev, True)
        _move(before, dev, undo, report)

    seconds = _transaction([before, read_state(dev)], None, target, timeout, steps, report)
    _ip_ignore_gone(["link", "del", "dev", bridge])
    report.phase(f"deleted bridge {bridge}")
    return BridgeResult(
        bridge=bridge,
        dev=dev,
        addresses=[a.cidr for a in before.addresses],
        routes=[r.describe() for r in before.routes],
        checked=target or "",
        seconds=seconds,
    )
