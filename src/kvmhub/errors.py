"""kvmhub's errors.

Every failure kvmhub reports is a :class:`KvmhubError`. Each carries what a user needs: a stable
``code`` (what went wrong, for programs), what failed (the message), the likely ``cause``, and the
``hint`` (the fix, a command when there is one); ``original`` keeps the underlying libvirt / qemu-img
message.

The tree, with each kind's default code::

    KvmhubError                 exit 1   HTTP 500   failed
     +-- InvalidInput           exit 2   HTTP 400   input.invalid     bad name, size, path, option
     +-- NotFound               exit 3   HTTP 404   not_found         no such VM, image, network, pool
     +-- Conflict               exit 4   HTTP 409   conflict          name taken, VM in the wrong state, image in use
     +-- HostProblem            exit 5   HTTP 503   host.problem      libvirtd unreachable, virtlogd missing,
     |                                                                KVM unusable, no space, permission denied,
 |                                                                a function the libvirt driver lacks
     +-- OperationTimeout       exit 6   HTTP 504   timeout           a libvirt call or a wait ran out of time
     +-- OperationFailed        exit 1   HTTP 500   failed            anything else libvirt or a tool refused

:func:`exit_code` and :func:`http_status` are the only two maps from errors to the outside world; they go
by kind, so a code never changes an exit status.

Codes are dotted lower-case words, stable across releases: a program may match on them. A raise site
gives one with ``code=`` when it means one of these; otherwise the kind's default stands:

    failed                      libvirt, QEMU or a tool failed for a reason not listed here
    input.invalid               the request is wrong (a value, a path, an option, a combination)
    input.invalid_name          a name breaks kvmhub's naming rule
    input.invalid_size          a size or amount cannot be read or is out of range
    libvirt.refused             libvirt refused a definition kvmhub sent it (XML or a value in it)
    not_found                   an object of another kind does not exist
    vm.not_found                no such VM
    image.not_found             no such image
    network.not_found           no such network
    pool.not_found              no such storage pool
    volume.not_found            no such volume in the pool
    snapshot.not_found          no such snapshot of the VM
    disk.not_found              the VM has no such disk
    nic.not_found               the VM has no such NIC
    share.not_found             the VM has no share with that tag
    vm.no_display               the VM has no VNC display
    backup.not_found            no backup (or backup point) where it was looked for
    user.not_found              no such user of the server
    token.not_found             no such API token (or not one of the caller's)
    project.not_found           no such project (or not one of the caller's)
    conflict                    the request clashes with the current state in another way
    name.taken                  an object of that kind and name already exists
    vm.wrong_state              the VM is running when it must be stopped, or the reverse
    vm.no_console               the VM has no serial console to attach to
    vm.display_exposed          the VM's VNC display listens beyond loopback, so it is not served
    image.in_use                VMs or volumes still use the image
    image.incomplete            the image's import is still running or was interrupted
    pool.inactive               the storage pool is not started
    pool.in_use                 VMs still use volumes of the pool
    volume.in_use               VMs or overlays still use the volume
    project.not_empty           the project still owns VMs
    project.quota_exceeded      the request would take the project beyond one of its quotas (HTTP 403)
    host.problem                the host cannot do it for another reason
    host.libvirtd_unreachable   no libvirt daemon answers on the URI
    host.virtlogd_unreachable   libvirtd cannot reach virtlogd
    host.kvm_unusable           /dev/kvm is missing or QEMU cannot open it
    host.no_space               the host's disk or the pool is full
    host.permission_denied      QEMU or libvirtd may not open a file it needs
    host.access_denied          this user may not use the libvirt URI
    hv.unsupported              the host's libvirt driver (or its version) lacks the function asked for
    timeout                     a wait ran out of time
    libvirt.timeout             libvirtd or QEMU did not answer a call in time
    op.cancelled                the operation was cancelled (Ctrl-C or a cancel request) and undone
    op.not_found                no such operation in the journal
    lock.timeout                another operation held the resource longer than the wait allowed
    auth.invalid                a wrong password, or an unknown, revoked or expired token or session
    auth.throttled              too many wrong passwords in a row: the user is locked out for a while
    auth.csrf                   a change sent with a session cookie lacks the session's CSRF token
    vm.no_agent                 the VM's definition has no guest-agent channel
    vm.agent_unresponsive       the VM's guest agent does not answer (guest booting, qemu-ga not running)
    guest.not_found             no such program or file in the guest
    guest.is_directory          a path in the guest is a directory where a file is needed
    share.path_refused          the host directory is outside the roots the admin allows for shares, or never shared
    vm.firmware_conflict        the firmware asked for cannot go with another option (Secure Boot with BIOS, ...)
    host.no_uefi                the host's libvirt finds no UEFI firmware (OVMF) for the VM
    host.no_secure_boot         the host's libvirt finds no UEFI firmware with Secure Boot for the VM
    device.not_found            the host has no such device, or the VM was not given it
    device.in_use               the host device is given to a VM already
    device.host_in_use          the host itself uses the device (a NIC with an address, the disk holding /)
    device.group_not_viable     other devices of the device's IOMMU group are bound to host drivers
    host.iommu_off              the host has no IOMMU (or it is off), so no PCI device can be given to a VM
    template.not_found          no warm template of that name
    template.in_use             VMs made from the warm template still stand on its base

Messages, causes and hints name CLI flags and commands as data, so each front end phrases them in its own terms:
``{opt:max_cpus}`` is ``--max-cpus`` for the CLI and the request field ``max_cpus`` for the API; ``{cmd:start
NAME}`` is `` `kvmhub start NAME` `` for the CLI and `` `POST /api/v1/vms/NAME/start` `` for the API (the
request doing the same, its flags as the body's fields: :data:`API_COMMANDS`); a command no request does, as
``{cmd:host setup}``, reads `` `kvmhub host setup` `` for both, to be run on the server's host. ``str(err)``,
``err.message``, ``err.cause`` and ``err.hint`` read as the CLI prints them; :meth:`KvmhubError.to_dict` and
:func:`render` take the front end. Commands of other tools (`virsh ...`, `systemctl ...`) are plain text.
"""

from __future__ import annotations

import json
import re
from typing import ClassVar, Literal

__all__ = [
    "API_COMMANDS",
    "CODES",
    "Conflict",
    "Front",
    "HostProblem",
    "InvalidInput",
    "KvmhubError",
    "NotFound",
    "OperationFailed",
    "OperationTimeout",
    "QuotaExceeded",
    "exit_code",
    "from_dict",
    "http_status",
    "render",
]

Front = Literal["cli", "api"]

CODES: frozenset[str] = frozenset({
    "failed", "input.invalid", "input.invalid_name", "input.invalid_size", "libvirt.refused",
    "not_found", "vm.not_found", "image.not_found", "network.not_found", "pool.not_found", "volume.not_found",
    "snapshot.not_found", "disk.not_found", "nic.not_found", "backup.not_found", "user.not_found", "token.not_found",
    "vm.no_display", "conflict", "name.taken", "vm.wrong_state", "vm.no_console", "vm.display_exposed",
    "image.in_use", "image.incomplete", "pool.inactive", "pool.in_use", "volume.in_use",
    "host.problem", "host.libvirtd_unreachable", "host.virtlogd_unreachable", "host.kvm_unusable",
    "host.no_space", "host.permission_denied", "host.access_denied", "hv.unsupported",
    "timeout", "libvirt.timeout", "op.cancelled", "op.not_found", "lock.timeout",
    "auth.invalid", "auth.throttled", "auth.csrf",
    "project.not_found", "project.not_empty", "project.quota_exceeded",
    "vm.no_agent", "vm.agent_unresponsive", "guest.not_found", "guest.is_directory",
    "share.not_found", "share.path_refused",
    "vm.firmware_conflict", "host.no_uefi", "host.no_secure_boot",
    "device.not_found", "device.in_use", "device.host_in_use", "device.group_not_viable", "host.iommu_off",
    "template.not_found", "template.in_use",
})  # fmt: skip

_TERM = re.compile(r"\{(opt|cmd):([^{}\n]+)\}")
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def _cli_term(match: re.Match[str]) -> str:
    kind, body = match.group(1), match.group(2)
    if kind == "opt":
        return "--" + body.replace("_", "-")
    return f"`kvmhub {body}`"


API_PREFIX = "/api/v1"
# the API request doing what a CLI command does; its path's {params} take the command's words after it in turn
API_COMMANDS: dict[str, str] = {
    "ls": "GET /vms", "show": "GET /vms/{name}", "create": "POST /vms", "set": "PATCH /vms/{name}",
    "start": "POST /vms/{name}/start", "stop": "POST /vms/{name}/stop", "rm": "DELETE /vms/{name}",
    "save": "POST /vms/{name}/save", "clone": "POST /vms/{name}/clone", "export": "POST /vms/{name}/export",
    "ip": "GET /vms/{name}/ip", "snapshot ls": "GET /vms/{name}/snapshots", "backup ls": "GET /vms/{name}/backups",
    "disk add": "POST /vms/{name}/disks", "disk resize": "POST /vms/{name}/disks/{target}/resize",
    "host check": "GET /hosts/local", "ops ls": "GET /operations",
    "image ls": "GET /images", "image import": "POST /images", "image rm": "DELETE /images/{name}",
    "net ls": "GET /networks", "net create": "POST /networks", "net lease ls": "GET /networks/{name}/leases",
    "pool ls": "GET /pools", "pool create": "POST /pools", "vol ls": "GET /pools/{pool}/volumes",
    "vol show": "GET /pools/{pool}/volumes/{name}", "vol rm": "DELETE /pools/{pool}/volumes/{name}",
    "vol clone": "POST /pools/{pool}/volumes/{name}/clone", "vol upload": "PUT /pools/{pool}/volumes/{name}/data",
    "user ls": "GET /users", "token ls": "GET /tokens", "project ls": "GET /projects",
    "project show": "GET /projects/{name}", "project add": "POST /projects", "project set": "PATCH /projects/{name}",
    "exec": "POST /vms/{name}/exec",
    "share ls": "GET /vms/{name}/shares", "share add": "POST /vms/{name}/shares",
    "share rm": "DELETE /vms/{name}/shares/{tag}",
    "image customize": "POST /images/{name}/customize", "disk edit": "POST /vms/{name}/edit",
    "host devices": "GET /hosts/local/devices", "device attach": "POST /vms/{name}/devices",
    "device detach": "DELETE /vms/{name}/devices/{device}",
    "template ls": "GET /templates", "template show": "GET /templates/{name}",
    "template rm": "DELETE /templates/{name}",
}  # fmt: skip
_PARAM = re.compile(r"\{[a-z_]+\}")


def _api_request(command: str) -> str | None:
    """``command`` (CLI words, flags) as the API request doing the same, or None when no route does it."""
    words = command.split()
    for length in (3, 2, 1):
        route = API_COMMANDS.get(" ".join(words[:length])) if len(words) >= length else None
        if route is not None:
            break
    else:
        return None
    method, path = route.split(" ", 1)
    args: list[str] = []
    fields: dict[str, object] = {}
    rest = words[length:]
    while rest:
        word = rest.pop(0)
        if flag := _FLAG.fullmatch(word):
            takes_value = bool(rest) and not _FLAG.fullmatch(rest[0])
            value = rest.pop(0) if takes_value else True
            fields[flag.group(1).replace("-", "_")] = value
        elif word != "...":
            args.extend(word.split("/"))  # POOL/VOL names two path parameters
    path = _PARAM.sub(lambda m: args.pop(0) if args else m.group(0), path)
    if fields.pop("help", None):
        return f"the schema of `{method} {API_PREFIX}{path}` at /docs"
    if fields and method == "GET":
        return f"`{method} {API_PREFIX}{path}?" + "&".join(f"{k}={str(v).lower() if v is True else v}"
                                                         for k, v in fields.items()) + "`"
    body = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in fields.items()}
    return f"`{method} {API_PREFIX}{path}`" + (f" with `{json.dumps(body)}`" if body else "")


def _api_term(match: re.Match[str]) -> str:
    kind, body = match.group(1), match.group(2)
    if kind == "opt":
        return body
    # a command no route does (host setup, repair ...) is run on the server's host: named as the command
    return _api_request(body) or f"`kvmhub {body}`"


def render(text: str, front: Front = "cli") -> str:
    """`text` with its ``{opt:...}`` and ``{cmd:...}`` terms phrased for the CLI or the API."""
    return _TERM.sub(_cli_term if front == "cli" else _api_term, text)


def _maybe(text: str | None, front: Front) -> str | None:
    return None if text is None else render(text, front)


def _rewrapped(new: str | None, old: str | None) -> str | None:
    # `err.message = f"{doing}: {err.message}"` gets the CLI reading back: keep the terms it was made of
    if new is None or old is None or not _TERM.search(old):
        return new
    return new.replace(render(old), old, 1)


class KvmhubError(Exception):
    """Root of every error kvmhub raises.

    ``message``, ``cause`` and ``hint`` may name CLI flags and commands as ``{opt:...}`` / ``{cmd:...}``
    terms; the attributes read them rendered for the CLI, :meth:`to_dict` for either front end.
    """

    code: str
    default_code: ClassVar[str] = "failed"

    def __init__(
        self,
        message: str,
        *,
        cause: str | None = None,
        hint: str | None = None,
        original: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self._message = message
        self._cause = cause
        self._hint = hint
        self.original = original
        self.code = code or self.default_code

    @property
    def message(self) -> str:
        return render(self._message)

    @message.setter
    def message(self, text: str) -> None:
        self._message = _rewrapped(text, self._message) or text

    @property
    def cause(self) -> str | None:
        return _maybe(self._cause, "cli")

    @cause.setter
    def cause(self, text: str | None) -> None:
        self._cause = _rewrapped(text, self._cause)

    @property
    def hint(self) -> str | None:
        return _maybe(self._hint, "cli")

    @hint.setter
    def hint(self, text: str | None) -> None:
        self._hint = _rewrapped(text, self._hint)

    def __str__(self) -> str:
        parts = [self.message]
        if self.cause:
            parts.append(f"cause: {self.cause}")
        if self.hint:
            parts.append(f"fix: {self.hint}")
        if self.original and self.original not in self.message:
            parts.append(f"libvirt said: {self.original}")
        return "\n".join(parts)

    def to_dict(self, front: Front = "cli") -> dict[str, str | None]:
        """The error as data, its flags and commands phrased for `front` (``"cli"`` or ``"api"``)."""
        return {
            "error": type(self).__name__,
            "code": self.code,
            "message": render(self._message, front),
            "cause": _maybe(self._cause, front),
            "hint": _maybe(self._hint, front),
            "original": self.original,
        }

    def terms(self) -> dict[str, str | None]:
        """Message, cause and hint as written, their ``{opt:}``/``{cmd:}`` terms unrendered: what a server sends
        a CLI client so it can phrase them with its own flags (see :func:`from_dict`)."""
        return {"message": self._message, "cause": self._cause, "hint": self._hint}


class InvalidInput(KvmhubError):
    """The request itself is wrong: a name, size, path or option kvmhub refuses."""

    default_code = "input.invalid"


class NotFound(KvmhubError):
    """The named object (VM, image, network, pool, volume, snapshot) does not exist."""

    default_code = "not_found"


class Conflict(KvmhubError):
    """The request clashes with the current state: a taken name, a VM in the wrong phase."""

    default_code = "conflict"


class HostProblem(KvmhubError):
    """The host cannot do it: daemons down, permissions, KVM unusable, disk full."""

    default_code = "host.problem"


class OperationTimeout(KvmhubError):
    """A libvirt call or a wait did not finish in time."""

    default_code = "timeout"


class OperationFailed(KvmhubError):
    """libvirt, QEMU or a tool failed for a reason not covered by the other kinds."""


class QuotaExceeded(KvmhubError):
    """A request would take a project beyond one of its quotas (the API answers it 403)."""

    default_code = "project.quota_exceeded"


_EXIT_CODES: dict[type[KvmhubError], int] = {
    InvalidInput: 2,
    NotFound: 3,
    Conflict: 4,
    HostProblem: 5,
    OperationTimeout: 6,
}

_HTTP_STATUSES: dict[type[KvmhubError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    HostProblem: 503,
    OperationTimeout: 504,
}


def _lookup(table: dict[type[KvmhubError], int], err: KvmhubError, default: int) -> int:
    for klass in type(err).__mro__:
        if klass in table:
            return table[klass]
    return default


def report_lines(err: KvmhubError) -> list[str]:
    """An error as the command line shows it: ``error: MESSAGE``, then its cause, its fix and libvirt's own words
    when they add something."""
    lines = [f"error: {err.message}"]
    if err.cause:
        lines.append(f"  cause: {err.cause}")
    if err.hint:
        lines.append(f"  fix:   {err.hint}")
    if err.original and err.original not in err.message:
        lines.append(f"  libvirt said: {err.original}")
    return lines


def exit_code(err: KvmhubError) -> int:
    """The CLI exit code for an error (README.md, "Exit codes": 1 failure .. 6 timeout; the tree above)."""
    return _lookup(_EXIT_CODES, err, 1)


def from_dict(data: dict[str, object], status: int | None = None) -> KvmhubError:
    """An error a server sent back as data (``to_dict`` plus ``terms``), as the exception it was; without a
    known class name, the kind follows the HTTP ``status``."""
    kinds = {k.__name__: k for k in (InvalidInput, NotFound, Conflict, HostProblem, OperationTimeout,
                                     OperationFailed, KvmhubError)}
    by_status = {400: InvalidInput, 401: HostProblem, 403: HostProblem, 404: NotFound, 409: Conflict,
                 413: InvalidInput, 422: InvalidInput, 503: HostProblem, 504: OperationTimeout}
    kind = kinds.get(str(data.get("kind") or data.get("error") or "")) or by_status.get(status or 0, OperationFailed)
    if data.get("code") == QuotaExceeded.default_code:
        kind = QuotaExceeded
    raw = data.get("terms") if isinstance(data.get("terms"), dict) else {}
    assert isinstance(raw, dict)

    def text(key: str, fallback: str) -> str | None:
        value = raw.get(key) or data.get(fallback)
        return str(value) if value is not None else None

    original = data.get("original", data.get("detail"))
    return kind(text("message", "message") or str(data.get("error") or "failed"), cause=text("cause", "cause"),
                hint=text("hint", "hint"), original=original if isinstance(original, str) else None,
                code=str(data.get("code") or kind.default_code))


def http_status(err: KvmhubError) -> int:
    """The HTTP status the API answers an error with."""
    return _lookup(_HTTP_STATUSES, err, 500)
