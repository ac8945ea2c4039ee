"""Encrypted disks: LUKS qcow2 volumes whose random passphrase lives only in a private libvirt secret.

The passphrase never leaves the process that makes it: it goes into the secret (private, so libvirt
never hands it back) and libvirt passes it to qemu-img and QEMU itself. Losing the secret loses the disk's
data, so only removing the VM (or its disk) removes it.
"""

from __future__ import annotations

import secrets as random_bytes
import uuid as uuidlib

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import secrets as hv_secrets
from kvmhub.hv import storage as hv_storage
from kvmhub.models import VMSpec
from kvmhub.ops.actions import Action, StepLog
from kvmhub.validate import check_name
from kvmhub.xml.secret import volume_secret_xml
from kvmhub.xml.volume import volume_from_xml

PASSPHRASE_BYTES = 32
# qemu-img times its LUKS key stretching with the thread's CPU clock; on a busy host with tick-based CPU
# accounting the first measurement can read zero and qemu-img gives up with this message
CALIBRATION_GLITCH = "Unable to get accurate CPU usage"
ATTEMPTS = 12  # a failed calibration returns within ~0.1 s; under load it fails up to 60 % of the time


def new_disk_secret(hv: Hypervisor, vm: str, target: str, undo: StepLog | None = None) -> str:
    """A new private, persistent libvirt secret holding a random 32-byte passphrase for disk `target` of
    VM `vm`; returns its UUID. With `undo`, its removal is registered before the secret is defined, so an
    interrupt at any point leaves none behind; without, a failure leaves none behind either."""
    check_name(vm, "VM")
    # the usage string must be unique among secrets: a random tail keeps leftovers of an old VM harmless
    usage = f"/kvmhub/{vm}/{target}/{uuidlib.uuid4().hex[:8]}"
    uuid = str(uuidlib.uuid4())
    if undo is not None:
        undo.add(f"delete the key of disk {target}", Action("secret.delete", {"uuid": uuid}))
    secret = hv_secrets.define(hv, volume_secret_xml(usage, f"kvmhub: key of disk {target} of VM {vm}", uuid))
    try:
        # hex text: libvirt hands the value to qemu-img and QEMU as a passphrase string
        secret.set_value(random_bytes.token_hex(PASSPHRASE_BYTES).encode())
    except BaseException:
        secret.undefine()
        raise
    return secret.uuid


def delete_secret(hv: Hypervisor, uuid: str) -> None:
    """Remove the secret `uuid`; no error if it is already gone."""
    try:
        secret = hv_secrets.lookup(hv, uuid)
    except KvmhubError:
        return
    secret.undefine()


def encrypt_disk(spec: VMSpec, volume: str, secret: str) -> VMSpec:
    """`spec` with its disk on `volume` encrypted by `secret`, the secret recorded as the VM's own."""
    disks = [d.model_copy(update={"encryption_secret": secret}) if d.source.volume == volume else d
             for d in spec.disks]
    owned = [*spec.meta.owned_secrets, secret]
    return spec.model_copy(update={"disks": disks, "meta": spec.meta.model_copy(update={"owned_secrets": owned})})


def encrypt_new_disk(hv: Hypervisor, spec: VMSpec, volume: str, undo: StepLog) -> tuple[VMSpec, str]:
    """A new key for the disk of `spec` on `volume` (not made yet), its removal registered with `undo`;
    returns the spec with that disk encrypted and the secret's UUID, for ``volume_xml(encryption_secret=)``."""
    target = next((d.target for d in spec.disks if d.source.volume == volume), "vda")
    secret = new_disk_secret(hv, spec.name, target, undo)
    return encrypt_disk(spec, volume, secret), secret


def create_volume(pool: hv_storage.Pool, xml: str, *, what: str) -> hv_storage.Volume:
    """``pool.create_volume`` for an encrypted volume, retried when qemu-img's LUKS calibration glitches."""
    name = volume_from_xml(xml).name
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return pool.create_volume(xml, what=what)
        except KvmhubError as exc:
            if CALIBRATION_GLITCH not in (exc.original or "") or attempt == ATTEMPTS:
                raise
            if pool.has_volume(name):
                pool.volume(name).delete()
    raise AssertionError("unreachable")
