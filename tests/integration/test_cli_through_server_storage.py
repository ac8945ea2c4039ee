"""A file of the caller's machine through the server into a real libvirtd's storage and back: `vol upload` and
`vol download` stream it (with progress), `image import` sends it and imports it; library mode sees the result.

The server runs in-process under uvicorn on a temporary unix socket over the session's private test host.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner


@pytest.fixture(scope="module")
def remote(test_host: TestHost, kvmhub: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``--remote unix:...`` of a server over the test host, whose pools `host setup` made."""
    r = kvmhub("host", "setup", "--no-network")
    assert r.code == 0, r.err + r.out
    base = tmp_path_factory.mktemp("server")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**test_host.env(), "KVMHUB_STATE_DIR": str(base / "state")}.items():
            env.setenv(key, value)
        socket = base / "kvmhub.sock"
        app = Marked(create_app(ServerSettings(uri=test_host.uri, socket=None)), "unix")
        uv = uvicorn.Server(uvicorn.Config(app, uds=str(socket), log_level="warning"))
        thread = threading.Thread(target=uv.run, name="test-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        try:
            yield f"unix:{socket}"
        finally:
            uv.should_exit = True
            thread.join(30)


def test_a_volume_goes_up_and_comes_back_the_same(remote: str, kvmhub: Runner, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024**2 + 123)
    src = tmp_path / "blob.raw"
    src.write_bytes(data)
    r = kvmhub("--remote", remote, "vol", "upload", "default/blob.raw", str(src))
    assert r.code == 0, r.err
    assert r.err.count("uploading blob.raw: ") >= 3 and "volume default/blob.raw: raw, 3M" in r.err
    try:
        r = kvmhub("vol", "show", "default/blob.raw", "--json")  # library mode sees what the server made
        assert r.code == 0 and '"capacity_bytes": 3145851' in r.out, r.out
        back = tmp_path / "back.raw"
        r = kvmhub("--remote", remote, "vol", "download", "default/blob.raw", str(back))
        assert r.code == 0, r.err
        assert back.read_bytes() == data and f"written to {back}" in r.err
        r = kvmhub("--remote", remote, "vol", "download", "default/blob.raw", str(back))
        assert r.code == 4 and "already exists" in r.err and back.read_bytes() == data
        assert r.err.splitlines()[0] == kvmhub("vol", "download", "default/blob.raw", str(back)).err.splitlines()[0]
    finally:
        assert kvmhub("--remote", remote, "vol", "rm", "default/blob.raw").code == 0


def test_an_image_file_is_sent_and_imported(remote: str, kvmhub: Runner, tmp_path: Path) -> None:
    src = tmp_path / "small.raw"
    src.write_bytes(b"\x00" * (2 * 1024**2))
    r = kvmhub("--remote", remote, "image", "import", str(src), "--name", "sent")
    assert r.code == 0, r.err
    assert "uploading small.raw: " in r.err and "image sent: qcow2 from raw, 2M virtual" in r.err
    try:
        local = kvmhub("image", "show", "sent", "--json")
        through = kvmhub("--remote", remote, "image", "show", "sent", "--json")
        assert local.code == through.code == 0 and local.out == through.out
        # the file went up as a volume of its own, gone once imported
        r = kvmhub("vol", "ls", "kvmhub-images", "--json")
        assert "upload-" not in r.out and "small.raw" not in r.out
    finally:
        assert kvmhub("--remote", remote, "image", "rm", "sent").code == 0
    assert kvmhub("image", "show", "sent").code == 3
