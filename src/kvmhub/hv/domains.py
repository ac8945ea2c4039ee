"""Domains (VMs) through libvirt, every call bounded and translated."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

import libvirt
import libvirt_qemu

from kvmhub.errors import KvmhubError, NotFound
from kvmhub.hv.connection import Hypervisor
from kvmhub.hv.states import state_name

if TYPE_CHECKING:  # a type only: loading the VM models costs a command that does not use them
    from kvmhub.models.vm import VMState

KVMHUB_NS = "https://kvmhub.dev/xmlns/1"
KVMHUB_NS_PREFIX = "kvmhub"


# named tuples, not dataclasses: `kvmhub ls`'s fast path would load dataclasses and inspect for them (~5 ms)
class DomainStats(NamedTuple):
    """One row of a bulk listing, from a single getAllDomainStats call."""

    name: str
    uuid: str
    state: VMState
    persistent: bool
    vcpus: int | None
    memory_kib: int | None
    handle: Any  # libvirt's domain object: calls on it need no lookup


class Address(NamedTuple):
    """An IP address of a guest interface, and which source reported it."""

    mac: str
    ip: str
    prefix: int
    iface: str
    source: str  # lease | agent | arp


class Domain:
    """A libvirt domain; methods are bounded libvirt calls."""

    def __init__(self, hv: Hypervisor, dom: Any) -> None:
        self.hv = hv
        self._dom = dom
        self.name: str = dom.name()

    def call(self, what: str, fn: Any, *args: Any, timeout: float | None = None, retry: bool = False) -> Any:
        """A bounded call of `fn(*args)`, errors reported as '<what> <VM name>' (for other hv modules); `retry`:
        a read, made again when its first try failed for no reason libvirt kept (see Hypervisor.call)."""
        return self.hv.call(fn, *args, what=f"{what} {self.name}", timeout=timeout, retry=retry, reconnect=False)

    @property
    def handle(self) -> Any:
        """The libvirt virDomain (for other modules of the hv package only)."""
        return self._dom

    @property
    def uuid(self) -> str:
        return str(self._dom.UUIDString())

    def state(self) -> VMState:
        code, _reason = self.call("reading the state of", self._dom.state, retry=True)
        return state_name(int(code))

    def is_active(self) -> bool:
        return bool(self.call("reading the state of", self._dom.isActive, retry=True))

    def is_persistent(self) -> bool:
        return bool(self.call("reading", self._dom.isPersistent, retry=True))

    def xml(self, *, inactive: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return str(self.call("reading the definition of", self._dom.XMLDesc, flags, retry=True))

    def start(self) -> None:
        self.call("starting", self._dom.create, timeout=max(self.hv.timeout, 120.0))

    def shutdown(self, *, mode: str = "acpi") -> None:
        flags = {
            "acpi": libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
            "agent": libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT,
            "default": libvirt.VIR_DOMAIN_SHUTDOWN_DEFAULT,
        }[mode]
        self.call("shutting down", self._dom.shutdownFlags, flags)

    def destroy(self) -> None:
        self.call("killing", self._dom.destroy)

    def reboot(self) -> None:
        self.call("rebooting", self._dom.reboot, libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)

    def suspend(self) -> None:
        self.call("pausing", self._dom.suspend)

    def resume(self) -> None:
        self.call("resuming", self._dom.resume)

    def undefine(self) -> None:
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )
        self.call("removing the definition of", self._dom.undefineFlags, flags)

    def autostart(self) -> bool:
        return bool(self.call("reading autostart of", self._dom.autostart, retry=True))

    def set_autostart(self, on: bool) -> None:
        self.call("setting autostart of", self._dom.setAutostart, 1 if on else 0)

    def info(self) -> tuple[int, int, int]:
        """(state code, memory KiB, vCPUs)."""
        state, _maxmem, mem, vcpus, _cpu = self.call("reading", self._dom.info, retry=True)
        return int(state), int(mem), int(vcpus)

    def metadata(self) -> str | None:
        """The kvmhub metadata element as XML text, or None when the VM has none (or was undefined meanwhile)."""
        flags = self.metadata_flags()
        found: str | None = self.call("reading metadata of", lambda: _metadata_or_none(self, flags), retry=True)
        return found

    def metadata_flags(self) -> int:
        """The flags :meth:`metadata` reads with: the persistent definition's, for a VM that has one."""
        return libvirt.VIR_DOMAIN_AFFECT_CONFIG if self.is_persistent() else 0

    def _device_flags(self) -> tuple[int, bool]:
        live = self.is_active()
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0)
        return flags, live

    def attach_device(self, xml: str, *, live_only: bool = False) -> bool:
        """Add a device, live when running and always persistently (``live_only``: to the running VM only); True
        when it was applied live."""
        flags, live = self._device_flags()
        if live_only:
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
        self.call("adding a device to", self._dom.attachDeviceFlags, xml, flags)
        return live

    def detach_device(self, xml: str, *, live_only: bool = False) -> bool:
        """Remove a device, live when running and persistently (``live_only``: from the running VM only); True
        when it was removed live."""
        flags, live = self._device_flags()
        if live_only:
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
        self.call("removing a device from", self._dom.detachDeviceFlags, xml, flags)
        return live

    def update_device(self, xml: str) -> bool:
        """Change a device's settings (link state, filter, bandwidth), live when running; True if live."""
        flags, live = self._device_flags()
        self.call("changing a device of", self._dom.updateDeviceFlags, xml, flags)
        return live

    def set_metadata(self, xml: str) -> None:
        """Replace the kvmhub metadata element (bare `<vm>` form), live and in the persistent definition."""
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if self.is_active():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        self.call("writing metadata of", self._dom.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml,
                  KVMHUB_NS_PREFIX, KVMHUB_NS, flags)

    def addresses(self, source: str) -> list[Address]:
        """Guest IPv4/IPv6 addresses from `lease`, `agent` or `arp` (empty when the source has none)."""
        src = {
            "lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
            "arp": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
        }[source]
        try:
            found = self.call("reading addresses of", self._dom.interfaceAddresses, src, timeout=10.0)
        except KvmhubError:
            return []
        out: list[Address] = []
        for iface, data in (found or {}).items():
            if iface == "lo":
                continue
            for addr in data.get("addrs") or []:
                ip = str(addr.get("addr", ""))
                if not ip or ip.startswith(("127.", "fe80:")) or ip == "::1":
                    continue
                out.append(Address(str(data.get("hwaddr") or ""), ip, int(addr.get("prefix", 0)), iface, source))
        return out

    def agent_command(self, command: dict[str, Any], timeout: int = 5) -> Any:
        """Send one QMP-style command to the guest agent and return its `return` value."""
        raw = self.call(
            "asking the guest agent of",
            libvirt_qemu.qemuAgentCommand,
            self._dom,
            json.dumps(command),
            timeout,
            0,
            timeout=timeout + 5.0,
        )
        return json.loads(raw).get("return")

    def agent_ping(self) -> bool:
        try:
            self.agent_command({"execute": "guest-ping"}, timeout=2)
        except KvmhubError:
            return False
        return True

    def open_console(self) -> Any:
        """A libvirt stream on the serial console (the caller pumps it)."""
        stream = self.call("opening a stream for", self.hv.conn.newStream, libvirt.VIR_STREAM_NONBLOCK)
        self.call("opening the console of", self._dom.openConsole, None, stream, 0)
        return stream

    def open_display(self) -> int:
        """A socket fd connected by libvirt to the VM's first display (its password, if set, still applies)."""
        return int(self.call("connecting to the display of", self._dom.openGraphicsFD, 0, 0))


def lookup(hv: Hypervisor, name: str) -> Domain:
    """The domain called `name` (raises NotFound)."""
    dom = hv.call(hv.conn.lookupByName, name, what=f"looking up VM {name!r}", retry=True)
    return Domain(hv, dom)


def lookup_uuid(hv: Hypervisor, uuid: str) -> Domain | None:
    """The domain with this UUID, or None when there is none."""

    def find() -> Any:
        try:
            return hv.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    dom = hv.call(find, what=f"looking up VM {uuid}", retry=True)
    return Domain(hv, dom) if dom is not None else None


def exists(hv: Hypervisor, name: str) -> bool:
    try:
        lookup(hv, name)
    except NotFound:
        return False
    return True


def define(hv: Hypervisor, xml: str) -> Domain:
    return Domain(hv, hv.call(hv.conn.defineXML, xml, what="defining the VM"))


def list_all(hv: Hypervisor) -> list[Domain]:
    doms = hv.call(hv.conn.listAllDomains, 0, what="listing VMs", retry=True)
    return [Domain(hv, d) for d in doms]


_LISTING_STATS = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON


def _stats_row(dom: libvirt.virDomain, stats: dict[str, Any]) -> DomainStats:
    return DomainStats(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state_name(int(stats.get("state.state", 0))),
        persistent=True,
        vcpus=stats.get("vcpu.current"),
        memory_kib=stats.get("balloon.current") or stats.get("balloon.maximum"),
        handle=dom,
    )


def bulk_stats(hv: Hypervisor) -> list[DomainStats]:
    """Every domain's name, state, vCPUs and memory in one libvirt round trip."""

    def fetch() -> list[DomainStats]:
        return [_stats_row(dom, stats) for dom, stats in hv.conn.getAllDomainStats(_LISTING_STATS, 0)]

    return hv.call(fetch, what="listing VMs", retry=True)


def stats_of(hv: Hypervisor, dom: Domain) -> DomainStats:
    """What :func:`bulk_stats` says of one domain, in one round trip."""

    def fetch() -> DomainStats:
        [(handle, stats)] = hv.conn.domainListGetStats([dom.handle], _LISTING_STATS, 0)
        return _stats_row(handle, stats)

    return hv.call(fetch, what=f"reading VM {dom.name}", retry=True)


def metadata_of(hv: Hypervisor, doms: list[Domain], transient: frozenset[str]) -> dict[str, str | None]:
    """The kvmhub metadata (XML text, None when there is none) of each of ``doms`` by UUID, read in one bounded
    call (a listing of 500 VMs would otherwise pay a thread hand-off per VM); ``transient``: the names of the
    transient ones (their live definition is read)."""

    def fetch() -> dict[str, str | None]:
        return {dom.uuid: _metadata_or_none(dom, 0 if dom.name in transient else libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                for dom in doms}

    # a read whose reason libvirt lost is asked again (retry), on the same domain objects (no reconnect)
    return hv.call(fetch, what="reading VM metadata", timeout=hv.timeout + len(doms) * 0.05, retry=True,
                   reconnect=False)


def _metadata_or_none(dom: Domain, flags: int) -> str | None:
    """``dom``'s kvmhub metadata; None when it has none or was undefined meanwhile (any other error, one whose
    reason libvirt lost included, is raised: :meth:`Hypervisor.call` asks a read again for the latter)."""
    try:
        return str(dom.handle.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, KVMHUB_NS, flags))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise


def capabilities(hv: Hypervisor) -> str:
    return str(hv.call(hv.conn.getCapabilities, what="reading host capabilities", retry=True))


def hostname(hv: Hypervisor) -> str:
    return str(hv.call(hv.conn.getHostname, what="reading the host name", retry=True))


def versions(hv: Hypervisor) -> tuple[str, str]:
    """(libvirt version, hypervisor version) as dotted strings."""

    def fmt(n: int) -> str:
        return f"{n // 1_000_000}.{(n // 1000) % 1000}.{n % 1000}"

    lib = hv.call(hv.conn.getLibVersion, what="reading the libvirt version", retry=True)
    hyp = hv.call(hv.conn.getVersion, what="reading the QEMU version", retry=True)
    return fmt(int(lib)), fmt(int(hyp))


class ListingFlags(NamedTuple):
    autostart: frozenset[str]
    transient: frozenset[str]


def listing_flags(hv: Hypervisor) -> ListingFlags:
    """Names of autostarted and of transient domains, in two calls whatever the number of domains."""

    def names(flag: int) -> frozenset[str]:
        return frozenset(d.name() for d in hv.conn.listAllDomains(flag))

    auto = hv.call(names, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART, what="listing VMs", retry=True)
    trans = hv.call(names, libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT, what="listing VMs", retry=True)
    return ListingFlags(auto, trans)
