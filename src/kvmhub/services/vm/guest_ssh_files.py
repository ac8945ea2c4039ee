"""File data to and from a guest over SSH, for `kvmhub cp` of big files.

The guest agent moves a file as base64 in JSON requests: ~4 MB/s into a guest under TCG, where SSH moves ~19 MB/s.
So once the agent has checked the destination (or the source), a file of :data:`SSH_FROM` bytes or more goes over
SSH when the guest can be reached that way: the hypervisor is this machine, the guest's IPv4 address is on a
network this machine is attached to (never through a gateway), kvmhub's key exists and the VM's user is known.
The remote side prints a ready line before it reads or writes a byte, so SSH that cannot connect or log in is
told apart from a copy that failed, and the caller falls back to the agent having consumed nothing. A user other
than root goes through ``sudo -n``: the agent, which SSH stands in for, writes and reads as root.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import shlex
import subprocess
import tempfile
import time
from collections.abc import Generator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from kvmhub.errors import KvmhubError, OperationFailed
from kvmhub.hv import Hypervisor
from kvmhub.models import Phase
from kvmhub.reporting import Reporter
from kvmhub.services.vm import lifecycle, ssh

SSH_FROM = 512 * 1024  # smaller files go through the agent: an SSH handshake with a guest under TCG costs ~0.15 s
CHUNK = 1024 * 1024
READY = b"kvmhub-ready\n"
READY_TIMEOUT = 20.0  # seconds for SSH to connect, log in and start the remote side
END_TIMEOUT = 60.0  # seconds for the remote side to finish once every byte is sent or read
_ROUTES = Path("/proc/net/route")
_RTF_UP, _RTF_GATEWAY = 0x1, 0x2
# ssh ends the session when the guest has not answered its keep-alives for 15 s: a stalled guest is no hang
_OPTIONS = ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]


class Source(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass
class Session:
    """A started ``ssh`` whose remote side said it is ready; ``early`` holds bytes read past the ready line."""

    proc: subprocess.Popen[bytes]
    errors: IO[bytes]
    early: bytes

    def said(self) -> str:
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace").strip()

    def end(self, what: str) -> None:
        """Wait for ssh to finish; OperationFailed with its words when it did not end well."""
        try:
            code = self.proc.wait(END_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise OperationFailed(f"copying {what} over SSH did not finish within {END_TIMEOUT:.0f} s",
                                  cause="the guest stopped answering") from None
        if code != 0:
            raise OperationFailed(f"copying {what} over SSH failed", cause=self.said() or f"ssh exited {code}")

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.errors):
            if stream is not None:
                stream.close()


def directly_reached(ip: str, routes: Path = _ROUTES) -> bool:
    """Whether ``ip`` is on a network this machine is attached to (a route without a gateway, not the
    default one), so that reaching it sends nothing through a router."""
    try:
        address = int(ipaddress.IPv4Address(ip))
        lines = routes.read_text().splitlines()[1:]
    except (ValueError, OSError):
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        # /proc/net/route holds addresses as the bytes of network order printed as a little-endian number
        dest, mask = (int.from_bytes(bytes.fromhex(fields[i]), "little") for i in (1, 7))
        flags = int(fields[3], 16)
        if flags & _RTF_UP and not flags & _RTF_GATEWAY and mask and address & mask == dest & mask:
            return True
    return False


def target(hv: Hypervisor, name: str) -> ssh.Target | None:
    """Where SSH reaches VM ``name`` as it is now, or None when it cannot be used (see the module's words)."""
    if not hv.is_local or not ssh.private_key().exists():
        return None
    try:
        vm = lifecycle.show(hv, name)
    except KvmhubError:
        return None
    ipv4 = [ip for ip in vm.ips if ":" not in ip and directly_reached(ip)]
    if not ipv4 or vm.user is None or vm.phase is Phase.DEFINED:
        return None
    return ssh.Target(ipv4[0], vm.user, vm.uuid, vm.phase)


def _remote(user: str | None, script: str, path: str) -> str:
    """The command line the guest's login shell runs: ``script`` with ``path`` as $1, as root."""
    words = ["sh", "-c", script, "kvmhub", path]
    return shlex.join(words if user == "root" else ["sudo", "-n", *words])


def start(address: ssh.Target, script: str, path: str) -> Session | str:
    """Run ``script`` (which first prints :data:`READY`) in the guest over SSH; the session once it is ready,
    else what went wrong (ssh has ended then)."""
    argv = ssh.command(address, None, [_remote(address.user, f"echo {READY.decode().strip()} && {script}", path)])
    argv[1:1] = [*_OPTIONS, "-o", "ConnectTimeout=5"]  # before ssh.command's own: ssh keeps an option's first value
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the session)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
    except OSError as exc:
        errors.close()
        return f"cannot run ssh: {exc.strerror or exc}"
    session = Session(proc, errors, b"")
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + READY_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while len(seen) < len(READY) and READY.startswith(seen):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                session.close()
                return f"the guest's SSH server did not start the copy within {READY_TIMEOUT:.0f} s"
            data = os.read(proc.stdout.fileno(), CHUNK)
            if not data:
                break
            seen += data
    if seen.startswith(READY):
        session.early = seen[len(READY):]
        return session
    why = session.said()
    session.close()
    return why or f"ssh ended before the copy started (it printed {seen[:60]!r})"


def send(address: ssh.Target, src: Source, length: int, path: str, what: str, report: Reporter) -> int | str:
    """Write ``length`` bytes of ``src`` into guest file ``path``; the bytes sent, or why SSH could not be used
    (nothing read from ``src`` then)."""
    session = start(address, 'exec cat > "$1"', path)
    if isinstance(session, str):
        return session
    stdin = session.proc.stdin
    assert stdin is not None
    sent = 0
    try:
        report.bytes(what, 0, length)
        while sent < length:
            chunk = src.read(min(CHUNK, length - sent))
            if not chunk:
                break
            try:
                stdin.write(chunk)
            except BrokenPipeError:
                session.proc.wait(END_TIMEOUT)
                raise OperationFailed(f"copying {what} over SSH broke off after {sent} bytes",
                                      cause=session.said() or "the SSH session ended") from None
            sent += len(chunk)
            report.bytes(what, sent, length)
        stdin.close()
        session.end(what)
    finally:
        session.close()
    return sent


def receive(address: ssh.Target, path: str, what: str) -> Generator[bytes, None, None] | str:
    """Guest file ``path``'s bytes in chunks as they come, or why SSH could not be used."""
    session = start(address, 'exec cat -- "$1"', path)
    if isinstance(session, str):
        return session
    assert session.proc.stdin is not None
    session.proc.stdin.close()
    return _chunks(session, what)


def _chunks(session: Session, what: str) -> Generator[bytes, None, None]:
    stdout = session.proc.stdout
    assert stdout is not None
    try:
        if session.early:
            yield session.early
        while data := os.read(stdout.fileno(), CHUNK):
            yield data
        session.end(what)
    finally:
        session.close()
