"""A libvirt socket that stalls or hangs up, played by a plain unix socket: opening a connection gives a clear,
bounded error, once per attempt however many threads ask at the same time."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import pytest

from kvmhub.errors import HostProblem, KvmhubError, OperationTimeout
from kvmhub.hv import Hypervisor


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kh-hv-") as where:  # short: a socket path has 107 bytes at most
        yield Path(where)


def _daemon(path: Path, hang_up: bool) -> socket.socket:
    """A socket that accepts and then says nothing (a stalled libvirtd) or closes (one that died)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                peer, _ = server.accept()
            except OSError:
                return
            if hang_up:
                peer.recv(16)
                peer.close()
            else:
                held.append(peer)

    threading.Thread(target=accept, daemon=True).start()
    return server


def _connect(hv: Hypervisor) -> tuple[float, KvmhubError | None]:
    began = time.monotonic()
    try:
        assert hv.conn is not None
    except KvmhubError as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


def test_a_daemon_that_hangs_up_is_unreachable_not_a_failure(sock_dir: Path) -> None:
    server = _daemon(sock_dir / "sock", hang_up=True)
    try:
        took, err = _connect(Hypervisor(f"qemu+unix:///system?socket={sock_dir / 'sock'}", timeout=5))
    finally:
        server.close()
    assert isinstance(err, HostProblem) and err.code == "host.libvirtd_unreachable", err
    assert "libvirtd is not reachable" in err.message and "libvirtd" in (err.cause or "")
    assert took < 5


def test_threads_connecting_to_a_stalled_daemon_all_give_up_within_one_timeout(sock_dir: Path) -> None:
    server = _daemon(sock_dir / "sock", hang_up=False)
    hv = Hypervisor(f"qemu+unix:///system?socket={sock_dir / 'sock'}", timeout=1.5)
    try:
        began = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(lambda _: _connect(hv), range(6)))
        whole = time.monotonic() - began
    finally:
        server.close()
    assert all(isinstance(err, OperationTimeout) and err.code == "libvirt.timeout" for _, err in outcomes), outcomes
    assert all("no answer from libvirt after 2 s" in str(err) for _, err in outcomes)
    assert whole < 3.5, f"{whole:.1f} s for six callers"  # one bound (1.5 s), not one per caller


def test_a_connection_that_opens_after_its_caller_gave_up_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    late: list[libvirt.virConnect] = []

    def slow_open(uri: str) -> libvirt.virConnect:
        release.wait(10)
        late.append(real_open(uri))
        return late[-1]

    real_open = libvirt.open
    monkeypatch.setattr(libvirt, "open", slow_open)
    hv = Hypervisor("test:///default", timeout=0.3)
    with pytest.raises(OperationTimeout):
        assert hv.conn is not None
    release.set()
    assert hv.settle(10)
    assert len(late) == 1
    with pytest.raises(libvirt.libvirtError):
        late[0].getURI()  # closed: no connection to libvirtd left open by nobody
