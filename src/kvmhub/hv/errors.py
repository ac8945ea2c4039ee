"""Turns libvirt's errors into kvmhub errors that name the cause and the fix."""

from __future__ import annotations

import re
from typing import NamedTuple

import libvirt

from kvmhub.errors import (
    Conflict,
    HostProblem,
    InvalidInput,
    KvmhubError,
    NotFound,
    OperationFailed,
    OperationTimeout,
)


class _Rule(NamedTuple):
    """One known failure: matched on libvirt's error numbers (`codes`) and/or a pattern of its message;
    `code` is the kvmhub error code it becomes. (A named tuple: see :mod:`kvmhub.hv.stats` for why.)"""

    kind: type[KvmhubError]
    message: str
    cause: str
    hint: str | None
    codes: tuple[int, ...] = ()
    pattern: str | None = None
    code: str | None = None

    def matches(self, code: int, text: str) -> bool:
        if self.codes and code not in self.codes:
            return False
        if self.pattern and not re.search(self.pattern, text, re.IGNORECASE):
            return False
        return bool(self.codes or self.pattern)


# Ordered: the first matching rule wins, so message patterns come before bare codes.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        HostProblem,
        "virtlogd is not running",
        "libvirtd hands every VM's console and log to virtlogd, and could not reach it",
        "start it: `virtlogd -d` (or `systemctl start virtlogd`), or run {cmd:host setup}",
        pattern=r"virtlogd",
        code="host.virtlogd_unreachable",
    ),
    _Rule(
        HostProblem,
        "libvirtd is not reachable",
        "no libvirt daemon answers on this URI's socket (not started, or stopped)",
        "start it: `libvirtd -d` (or `systemctl start libvirtd`), or run {cmd:host setup}",
        pattern=r"failed to connect socket|connection refused|no such file or directory.*sock",
        code="host.libvirtd_unreachable",
    ),
    _Rule(
        HostProblem,
        "KVM is not usable for this VM",
        "/dev/kvm is missing or cannot be opened by QEMU",
        "run {cmd:host check}; {cmd:host setup} fixes /dev/kvm's group and mode, "
        "and kvmhub falls back to TCG emulation (domain type qemu) when KVM does not work",
        pattern=r"kvm.*(not available|permission denied|no such file)|(could not access|failed to initialize) kvm",
        code="host.kvm_unusable",
    ),
    _Rule(
        HostProblem,
        "no space left on the host's disk",
        "the file system holding the VM's disks or state is full",
        "free space (`df -h /var/lib/libvirt`), or put the disks in another pool",
        pattern=r"no space left|ENOSPC|disk quota",
        code="host.no_space",
    ),
    _Rule(
        HostProblem,
        "permission denied",
        "QEMU or libvirtd may not open a file it needs (owner, mode, or a parent directory)",
        "make the file and every parent directory readable by the QEMU user "
        "(`ls -ld` each; `chmod o+x` on directories), or keep disks in a libvirt pool",
        pattern=r"permission denied|EACCES",
        code="host.permission_denied",
    ),
    _Rule(
        Conflict,
        "the VM is not running",
        "this action needs a running VM",
        "start it first: {cmd:start NAME}",
        pattern=r"domain is not running|not running",
        code="vm.wrong_state",
    ),
    _Rule(
        Conflict,
        "the VM is already running",
        "this action needs a stopped VM",
        "stop it first: {cmd:stop NAME}",
        pattern=r"already (running|active)",
        code="vm.wrong_state",
    ),
    _Rule(
        Conflict,
        "the name is already used",
        "an object of that kind with that name already exists on this host",
        "pick another name, or remove the existing one first",
        pattern=r"already exists|already defined|domain .* exists",
        code="name.taken",
    ),
    _Rule(
        NotFound,
        "no such VM",
        "no domain of that name or UUID is defined on this host",
        "list them: {cmd:ls}",
        codes=(libvirt.VIR_ERR_NO_DOMAIN,),
        code="vm.not_found",
    ),
    _Rule(
        NotFound,
        "no such network",
        "no libvirt network of that name",
        "list them: `virsh net-list --all`",
        codes=(libvirt.VIR_ERR_NO_NETWORK,),
        code="network.not_found",
    ),
    _Rule(
        NotFound,
        "no such storage pool",
        "no libvirt storage pool of that name",
        "list them: `virsh pool-list --all`; {cmd:host setup} defines the default pool",
        codes=(libvirt.VIR_ERR_NO_STORAGE_POOL,),
        code="pool.not_found",
    ),
    _Rule(
        NotFound,
        "no such volume",
        "no volume of that name in the pool",
        "list them: `virsh vol-list POOL`",
        codes=(libvirt.VIR_ERR_NO_STORAGE_VOL,),
        code="volume.not_found",
    ),
    _Rule(
        NotFound,
        "no such snapshot",
        "the VM has no snapshot of that name",
        "list them: {cmd:snapshot ls NAME}",
        codes=(libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT,),
        code="snapshot.not_found",
    ),
    _Rule(
        OperationTimeout,
        "libvirt timed out",
        "libvirtd or QEMU did not answer in time (a stalled daemon or a busy guest)",
        "check the daemon: `virsh version`; restart libvirtd if it does not answer",
        codes=(libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE),
        code="libvirt.timeout",
    ),
    _Rule(
        HostProblem,
        "access denied by libvirt",
        "this user may not use this libvirt URI",
        "run as root, or join the `libvirt` group",
        codes=(libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_ACCESS_DENIED),
        code="host.access_denied",
    ),
    _Rule(
        HostProblem,
        "this host's libvirt driver cannot do it",
        "",  # the driver's own words name the function it lacks
        "this libvirt URI's driver or version lacks the function: use a host whose libvirt has it "
        "(`virsh version` shows the driver and versions)",
        codes=(libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED),
        code="hv.unsupported",
    ),
    _Rule(
        InvalidInput,
        "libvirt refused the definition",
        "the generated XML or a value in it is not accepted by this libvirt/QEMU",
        None,
        codes=(
            libvirt.VIR_ERR_XML_ERROR,
            libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
            libvirt.VIR_ERR_INVALID_ARG,
            libvirt.VIR_ERR_XML_DETAIL,
        ),
        code="libvirt.refused",
    ),
)


def translate(err: libvirt.libvirtError, what: str) -> KvmhubError:
    """Map a libvirt error raised while doing `what` to the kvmhub error a user should see."""
    code = err.get_error_code() or 0
    text = err.get_error_message() or str(err)
    for rule in _RULES:
        if rule.matches(code, text):
            return rule.kind(f"{what}: {rule.message}", cause=rule.cause or text, hint=rule.hint, original=text,
                             code=rule.code)
    return OperationFailed(f"{what} failed", cause=None, hint=None, original=text)

