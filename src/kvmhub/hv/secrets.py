"""libvirt secrets (the keys of encrypted disks) through libvirt's secret API, every call bounded."""

from __future__ import annotations

from typing import Any

import libvirt

from kvmhub.errors import NotFound
from kvmhub.hv.connection import Hypervisor


class Secret:
    """A libvirt secret; methods are bounded libvirt calls."""

    def __init__(self, hv: Hypervisor, secret: Any) -> None:
        self.hv = hv
        self._secret = secret
        self.uuid: str = secret.UUIDString()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        return self.hv.call(fn, *args, what=f"{what} (secret {self.uuid})")

    def xml(self) -> str:
        return str(self._call("reading", self._secret.XMLDesc, 0))

    def set_value(self, value: bytes) -> None:
        """Store the secret's value (never logged; a private secret cannot be read back)."""
        self._call("setting the value of", self._secret.setValue, value, 0)

    def undefine(self) -> None:
        self._call("removing", self._secret.undefine)


def define(hv: Hypervisor, xml: str) -> Secret:
    """Define a secret from ``xml`` (see :func:`kvmhub.xml.secret.volume_secret_xml`)."""
    return Secret(hv, hv.call(hv.conn.secretDefineXML, xml, 0, what="defining a secret"))


def lookup(hv: Hypervisor, uuid: str) -> Secret:
    """The secret with this UUID; raises NotFound when there is none."""

    def find() -> Any:
        try:
            return hv.conn.secretLookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
                return None
            raise

    found = hv.call(find, what=f"looking up secret {uuid}", retry=True)
    if found is None:
        raise NotFound(f"no secret {uuid}", hint="list them: `virsh secret-list`")
    return Secret(hv, found)


def exists(hv: Hypervisor, uuid: str) -> bool:
    try:
        lookup(hv, uuid)
    except NotFound:
        return False
    return True


def list_uuids(hv: Hypervisor) -> list[str]:
    """The UUIDs of every secret on the host."""
    return [str(u) for u in hv.call(hv.conn.listSecrets, what="listing secrets", retry=True)]
