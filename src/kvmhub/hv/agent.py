"""The guest agent's exec and file calls (qemu-ga's guest-exec and guest-file-*), each bounded, their failures
turned into errors that name the cause and the fix.

An :class:`Agent` is made by :func:`agent`, which first checks that the VM runs and that its definition has the
agent's channel: over a driver without the channel (libvirt's test driver) the error says so before any call.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from kvmhub.errors import Conflict, KvmhubError, NotFound, OperationFailed
from kvmhub.hv.connection import Hypervisor
from kvmhub.hv.domains import Domain, lookup
from kvmhub.xml._util import parse
from kvmhub.xml.chardev import GUEST_AGENT_CHANNEL, has_agent_channel

READ_CHUNK = 1024 * 1024  # bytes per guest-file-read (~1.4 MB of base64 in the answer)
# bytes per guest-file-write: qemu-ga refuses a request of ~260 KB (192 KiB as base64) and then stops answering
# for a while; 64 KiB (87 KB of base64) stays far under that
WRITE_CHUNK = 64 * 1024
CALL_TIMEOUT = 30  # seconds one agent call may take (a guest under emulation can be slow to answer)

_GUEST_SIDE = re.compile(r"unable to execute QEMU agent command '([\w-]+)': (.*)", re.IGNORECASE | re.DOTALL)
_NOT_CONFIGURED = re.compile(r"guest agent is not configured", re.IGNORECASE)
_NOT_CONNECTED = re.compile(r"guest agent is not (connected|responding)|agent unresponsive|not available",
                            re.IGNORECASE)
_NOT_YET = re.compile(r"guest agent is not connected", re.IGNORECASE)  # libvirt refused before sending anything


@dataclass(frozen=True)
class ExecStatus:
    """guest-exec-status: whether the process ended, and how; captured output when it was asked for."""

    exited: bool
    exit_code: int | None = None
    signal: int | None = None
    out: bytes = b""
    err: bytes = b""
    truncated: bool = False

    @property
    def shell_code(self) -> int:
        """The exit code as a shell gives it: 128+N for a process killed by signal N."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code if self.exit_code is not None else 255


class GuestError(OperationFailed):
    """The agent ran the call and the guest refused it (``guest_message`` is qemu-ga's own words)."""

    def __init__(self, message: str, guest_message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.guest_message = guest_message


def no_agent(name: str) -> Conflict:
    """The error for a VM whose definition has no guest-agent channel."""
    return Conflict(
        f"VM {name} has no guest agent channel",
        cause=f"its definition has no virtio <channel> named {GUEST_AGENT_CHANNEL}, which qemu-guest-agent "
              "talks over (VMs made by {cmd:create} have one)",
        hint=f"add it with `virsh edit {name}`: <channel type='unix'><target type='virtio' "
             f"name='{GUEST_AGENT_CHANNEL}'/></channel> in <devices>, then restart the VM; the guest needs "
             "qemu-guest-agent installed and running",
        code="vm.no_agent",
    )


def _not_answering(name: str, original: str | None) -> Conflict:
    return Conflict(
        f"the guest agent of VM {name} does not answer",
        cause="the guest is still booting, or qemu-guest-agent is not installed or not running in it",
        hint=f"wait for the guest to boot ({{cmd:ip {name} --wait}}), or start qemu-guest-agent in the guest "
             "(`systemctl start qemu-guest-agent`)",
        original=original,
        code="vm.agent_unresponsive",
    )


def never_sent(exc: KvmhubError) -> bool:
    """Whether an agent call failed before it reached the guest: libvirt was not connected to the agent (yet)."""
    return exc.code == "vm.agent_unresponsive" and bool(_NOT_YET.search(exc.original or ""))


def agent(hv: Hypervisor, name: str) -> Agent:
    """The agent of running VM ``name`` (raises NotFound, Conflict ``vm.wrong_state`` / ``vm.no_agent``)."""
    dom = lookup(hv, name)
    if not dom.is_active():
        raise Conflict(f"VM {name} is not running", cause="the guest agent runs inside the guest",
                       hint=f"start it first: {{cmd:start {name}}}", code="vm.wrong_state")
    devices = parse(dom.xml(), f"the definition of VM {name}").find("devices")
    if devices is None or not has_agent_channel(devices):
        raise no_agent(name)
    return Agent(dom)


class Agent:
    """Calls to one VM's guest agent."""

    def __init__(self, dom: Domain) -> None:
        self.dom = dom
        self.name = dom.name

    def call(self, execute: str, arguments: dict[str, Any] | None = None, timeout: int = CALL_TIMEOUT) -> Any:
        """One agent command's ``return`` value; a refusal by the guest raises :class:`GuestError`."""
        command: dict[str, Any] = {"execute": execute}
        if arguments is not None:
            command["arguments"] = arguments
        try:
            return self.dom.agent_command(command, timeout=timeout)
        except KvmhubError as exc:
            raise self._translated(exc) from None

    def _translated(self, exc: KvmhubError) -> KvmhubError:
        text = exc.original or exc.message
        if found := _GUEST_SIDE.search(text):
            said = found.group(2).strip()
            return GuestError(f"the guest agent of VM {self.name} refused {found.group(1)}: {said}", said,
                              original=exc.original)
        if _NOT_CONFIGURED.search(text):
            return no_agent(self.name)
        if _NOT_CONNECTED.search(text):
            return _not_answering(self.name, exc.original)
        if exc.code == "vm.wrong_state":
            exc.hint = f"start it first: {{cmd:start {self.name}}}"
        return exc

    def ping(self) -> None:
        """Raises Conflict ``vm.agent_unresponsive`` unless the agent answers within a few seconds."""
        self.call("guest-ping", timeout=5)

    def exec(self, argv: list[str], *, env: list[str] | None = None, stdin: bytes | None = None,
             capture: bool = True) -> int:
        """Start ``argv`` in the guest (PATH searched); its PID. A program the guest lacks raises NotFound
        ``guest.not_found``."""
        args: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": capture}
        if env:
            args["env"] = env
        if stdin:
            args["input-data"] = base64.b64encode(stdin).decode()
        try:
            started = self.call("guest-exec", args)
        except GuestError as exc:
            if re.search(r"no such file|not found|failed to execute child", exc.guest_message, re.IGNORECASE):
                raise NotFound(f"no program {argv[0]!r} in VM {self.name}",
                               cause=f"the guest could not start it: {exc.guest_message}",
                               hint="give the program's full path, or install it in the guest",
                               original=exc.original, code="guest.not_found") from None
            raise
        return int(started["pid"])

    def exec_status(self, pid: int) -> ExecStatus:
        """Whether guest process ``pid`` (started by :meth:`exec`) ended; its code or signal and output."""
        got = self.call("guest-exec-status", {"pid": pid})
        if not got.get("exited"):
            return ExecStatus(False)
        signal = got.get("signal")
        return ExecStatus(True, exit_code=got.get("exitcode"), signal=int(signal) if signal is not None else None,
                          out=base64.b64decode(got.get("out-data", "")), err=base64.b64decode(got.get("err-data", "")),
                          truncated=bool(got.get("out-truncated") or got.get("err-truncated")))

    def file_open(self, path: str, mode: str, *, timeout: int = CALL_TIMEOUT) -> int:
        """A handle on guest file ``path`` opened with fopen ``mode`` (``r``, ``w``...)."""
        return int(self.call("guest-file-open", {"path": path, "mode": mode}, timeout=timeout))

    def file_read(self, handle: int, count: int = READ_CHUNK, *, timeout: int = CALL_TIMEOUT) -> tuple[bytes, bool]:
        """Up to ``count`` bytes from the handle's position, and whether the end of the file was reached."""
        got = self.call("guest-file-read", {"handle": handle, "count": min(count, READ_CHUNK)}, timeout=timeout)
        return base64.b64decode(got.get("buf-b64", "")), bool(got.get("eof"))

    def file_write(self, handle: int, data: bytes) -> int:
        """Write ``data`` at the handle's position, at most :data:`WRITE_CHUNK` bytes of it; the bytes written."""
        data = data[:WRITE_CHUNK]
        got = self.call("guest-file-write", {"handle": handle, "buf-b64": base64.b64encode(data).decode()})
        return int(got.get("count", 0))

    def file_seek(self, handle: int, offset: int, whence: str = "set") -> int:
        """Move the handle's position (``whence``: set, cur or end); the new position."""
        return int(self.call("guest-file-seek", {"handle": handle, "offset": offset, "whence": whence})["position"])

    def file_close(self, handle: int, *, timeout: int = CALL_TIMEOUT) -> None:
        """Close the handle."""
        self.call("guest-file-close", {"handle": handle}, timeout=timeout)
