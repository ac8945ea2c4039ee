"""Run a command in a guest through its guest agent, its output delivered as it comes.

qemu-ga hands captured output back only when the process ends. To stream it, the command runs under the guest's
``/bin/sh`` with stdout and stderr redirected to files in a private directory under ``/tmp``, which are read as
they grow and removed at the end. A guest without ``/bin/sh`` gets the command run directly, its captured output
delivered when it ends.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Protocol

from kvmhub.errors import InvalidInput, KvmhubError, NotFound, OperationFailed, OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.hv.agent import WRITE_CHUNK, Agent, ExecStatus, GuestError, agent, never_sent
from kvmhub.models.guest_rules import command_problem, stdin_problem
from kvmhub.reporting import QUIET, Reporter
from kvmhub.validate import check_name

Sink = Callable[[bytes], None]
SHELL = "/bin/sh"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_FOUND = 127
_NO_DIR = 125
_MARK = "kvmhub-exec:"
INLINE_STDIN = 32 * 1024  # stdin up to this size goes in the guest-exec request; more is written to a file first
# $1 the private directory, $2 a file to read stdin from (or ""), then the command; a missing program is told
# apart from one that exits 127
_WRAPPER = f"""d=$1; i=$2; shift 2
command -v "$1" >/dev/null 2>&1 || {{ echo "{_MARK} not found" >&2; exit {_NOT_FOUND}; }}
mkdir -m 700 "$d" || exit {_NO_DIR}
[ -z "$i" ] || exec <"$i"
exec "$@" >"$d/out" 2>"$d/err"
"""


def _poll_delays(longest: float = 0.25) -> Iterator[float]:
    delay = 0.02
    while True:
        yield delay
        delay = min(delay * 1.5, longest)


class Command(Protocol):
    """What :func:`run` runs (an :class:`kvmhub.models.guest.ExecRequest`, or a :class:`PlainCommand`)."""

    @property
    def argv(self) -> list[str]: ...
    @property
    def env(self) -> list[str]: ...
    @property
    def stdin(self) -> str | None: ...
    @property
    def timeout(self) -> float | None: ...


@dataclass(frozen=True)
class PlainCommand:
    """A command checked by the rules ExecRequest applies, without building the model (`exec`'s fast path)."""

    argv: list[str]
    env: list[str] = field(default_factory=list)
    stdin: str | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if problem := command_problem(self.argv, self.env, self.timeout):
            raise InvalidInput(problem)
        if problem := stdin_problem(self.stdin):
            raise InvalidInput(f"stdin: {problem}")


@dataclass(frozen=True)
class Ended:
    """How a command ended: its exit code (128+N when signal N killed it) and that signal."""

    exit_code: int
    signal: int | None = None


def decode_stdin(stdin: str | None) -> bytes | None:
    """The request's base64 stdin as bytes (InvalidInput when it is not base64)."""
    if stdin is None:
        return None
    try:
        return base64.b64decode(stdin, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("stdin is not valid base64", hint="send the command's input base64-encoded") from None


def environment(env: list[str]) -> list[str] | None:
    """What the agent gets as the environment: qemu-ga replaces the whole of it, so a usual PATH comes first."""
    if not env:
        return None
    return env if any(e.startswith("PATH=") for e in env) else [DEFAULT_PATH, *env]


def run_shell(ag: Agent, script: str, *args: str, timeout: float = 30.0, poll: float = 0.25,
              agent_wait: float = 0.0, started: Callable[[], None] | None = None) -> ExecStatus | None:
    """``sh -c script`` in the guest with ``args`` as $1...; its status once it ended, or None when the guest
    has no ``/bin/sh``. Its status is asked at most ``poll`` seconds apart. For up to ``agent_wait`` seconds
    the start is tried again while libvirt is not yet connected to the agent (e.g. just after a restore).
    ``started`` runs once the script runs in the guest (the script is killed if it raises)."""
    connect_by = time.monotonic() + agent_wait
    while True:
        try:
            pid = ag.exec([SHELL, "-c", script, "kvmhub", *args], capture=True)
            break
        except NotFound:
            return None
        except KvmhubError as exc:
            if not never_sent(exc) or time.monotonic() > connect_by:
                raise
            time.sleep(0.02)
    if started is not None:
        try:
            started()
        except BaseException:
            _kill(ag, pid)
            raise
    deadline = time.monotonic() + timeout
    for delay in _poll_delays(poll):
        status = ag.exec_status(pid)
        if status.exited:
            return status
        if time.monotonic() > deadline:
            _kill(ag, pid)
            raise OperationTimeout(f"a helper command in VM {ag.name} did not finish within {timeout:.0f} s",
                                   cause="the guest is very busy or stuck")
        time.sleep(delay)
    raise AssertionError("unreachable")


def _write_stdin(ag: Agent, path: str, data: bytes) -> str:
    """``data`` written into a new guest file ``path`` (its path), for a command's stdin too big to send inline."""
    try:
        handle = ag.file_open(path, "w")
    except GuestError as exc:
        if re.search(r"no such file", exc.guest_message, re.IGNORECASE):
            raise NotFound("no /tmp in the guest", code="guest.not_found") from None  # no sh either, most likely
        raise
    try:
        at = 0
        while at < len(data):
            wrote = ag.file_write(handle, data[at:at + WRITE_CHUNK])
            if wrote <= 0:
                raise OperationFailed(f"the guest agent of VM {ag.name} wrote nothing into {path}",
                                      cause="the guest's /tmp may be full")
            at += wrote
    finally:
        ag.file_close(handle)
    return path


def _remove(ag: Agent, *paths: str) -> None:
    """Remove guest files and directories without waiting (what is left behind is only in /tmp)."""
    if any(paths):
        with suppress(KvmhubError):
            ag.exec(["rm", "-rf", "--", *(p for p in paths if p)], env=[DEFAULT_PATH], capture=False)


def _kill(ag: Agent, pid: int) -> None:
    with suppress(KvmhubError):
        ag.exec([SHELL, "-c", 'kill -9 "$1"', "kvmhub", str(pid)], capture=False)


@dataclass
class _Tail:
    """One output file in the guest, read as it grows."""

    path: str
    sink: Sink
    handle: int | None = None
    at_end: bool = False

    def pump(self, ag: Agent) -> None:
        if self.handle is None:
            try:
                self.handle = ag.file_open(self.path, "r")
            except GuestError:
                return  # not made yet: the shell makes it before the command starts
        if self.at_end:
            ag.file_seek(self.handle, 0, "cur")  # clears the stream's end-of-file mark, so new bytes are seen
        while True:
            data, eof = ag.file_read(self.handle)
            if data:
                self.sink(data)
            self.at_end = eof or not data
            if self.at_end:
                return

    def close(self, ag: Agent) -> None:
        if self.handle is not None:
            with suppress(KvmhubError):
                ag.file_close(self.handle)
            self.handle = None


def run(hv: Hypervisor, name: str, req: Command, *, out: Sink, err: Sink, stream: bool = True,
        report: Reporter = QUIET) -> Ended:
    """Run ``req.argv`` in VM ``name``, passing its output to ``out`` and ``err`` as it comes; its exit code.
    With ``stream=False`` it runs without the guest's shell and its output comes when it ends (for a guest whose
    /tmp cannot be written).

    Raises NotFound ``guest.not_found`` (no such program in the guest), OperationTimeout (it ran past
    ``req.timeout``: it was killed), Conflict ``vm.no_agent`` / ``vm.agent_unresponsive`` / ``vm.wrong_state``.
    """
    check_name(name, "VM")
    stdin = decode_stdin(req.stdin)
    ag = agent(hv, name)
    env = environment(req.env)
    if not stream:
        return _run_direct(ag, req, env, stdin, out, err, report)
    private = f"/tmp/kvmhub-exec-{secrets.token_hex(8)}"
    stdin_file = ""
    try:
        if stdin and len(stdin) > INLINE_STDIN:
            stdin_file = _write_stdin(ag, f"{private}.in", stdin)
        pid = ag.exec([SHELL, "-c", _WRAPPER, "kvmhub-exec", private, stdin_file, *req.argv], env=env,
                      stdin=None if stdin_file else stdin)
    except NotFound:
        return _run_direct(ag, req, env, stdin, out, err, report)
    except BaseException:
        _remove(ag, stdin_file)
        raise
    tails = [_Tail(f"{private}/out", out), _Tail(f"{private}/err", err)]
    try:
        status = _follow(ag, pid, req, tails, report)
        for tail in tails:
            tail.pump(ag)
    finally:
        for tail in tails:
            tail.close(ag)
        _remove(ag, private, stdin_file)
    said = status.err.decode(errors="replace")
    if status.exit_code == _NOT_FOUND and _MARK in said:
        raise NotFound(f"no program {req.argv[0]!r} in VM {name}", cause="the guest's shell found no such command",
                       hint="give the program's full path, or install it in the guest", code="guest.not_found")
    if status.exit_code == _NO_DIR and tails[0].handle is None and said:
        raise OperationFailed(f"cannot run the command in VM {name}: {said.strip()}",
                              cause="kvmhub could not make its private directory under /tmp in the guest")
    return Ended(status.shell_code, status.signal)


def _follow(ag: Agent, pid: int, req: Command, tails: list[_Tail], report: Reporter) -> ExecStatus:
    """Read the output files until the process ends; kill it on timeout, cancel or any failure."""
    deadline = None if req.timeout is None else time.monotonic() + req.timeout
    try:
        for delay in _poll_delays():
            status = ag.exec_status(pid)
            if status.exited:
                return status  # the caller reads what is left, once
            for tail in tails:
                tail.pump(ag)
            report.cancel.check()
            if deadline is not None and time.monotonic() > deadline:
                _kill(ag, pid)
                raise _timed_out(ag.name, req)
            time.sleep(delay)
    except BaseException:
        _kill(ag, pid)
        raise
    raise AssertionError("unreachable")


def _timed_out(name: str, req: Command) -> OperationTimeout:
    return OperationTimeout(f"{req.argv[0]} did not finish within {req.timeout:g} s in VM {name}: it was killed",
                            hint="give it longer with {opt:timeout}", code="timeout")


def _run_direct(ag: Agent, req: Command, env: list[str] | None, stdin: bytes | None, out: Sink, err: Sink,
                report: Reporter) -> Ended:
    """The command run without a shell: its captured output, delivered when it ends."""
    if stdin and len(stdin) > INLINE_STDIN:
        raise InvalidInput(f"without a shell in the guest, a command takes at most {INLINE_STDIN // 1024} KiB of "
                           "stdin", hint="copy the input into the guest first ({cmd:cp}), then name the file")
    pid = ag.exec(req.argv, env=env, stdin=stdin, capture=True)
    deadline = None if req.timeout is None else time.monotonic() + req.timeout
    for delay in _poll_delays():
        status = ag.exec_status(pid)
        if status.exited:
            break
        if report.cancel.cancelled or (deadline is not None and time.monotonic() > deadline):
            _kill(ag, pid)
            report.cancel.check()
            raise _timed_out(ag.name, req)
        time.sleep(delay)
    if status.out:
        out(status.out)
    if status.err:
        err(status.err)
    if status.truncated:
        report.warn("the guest agent cut the command's output short (it keeps at most 16 MiB)")
    return Ended(status.shell_code, status.signal)


def run_captured(hv: Hypervisor, name: str, req: Command, report: Reporter = QUIET) -> tuple[Ended, bytes, bytes]:
    """:func:`run` with the output gathered: how it ended, its stdout and its stderr (the API's answer)."""
    outs: list[bytes] = []
    errs: list[bytes] = []
    ended = run(hv, name, req, out=outs.append, err=errs.append, report=report)
    return ended, b"".join(outs), b"".join(errs)
