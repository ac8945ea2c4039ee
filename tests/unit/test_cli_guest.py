"""`kvmhub exec` and `kvmhub cp` as a user runs them, in library mode and through a server over libvirt's test
driver (whose VMs have no guest agent): the same refusals, messages and exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_server import Result, run, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address


def same(server: str, *args: str, code: int) -> Result:
    """Run locally and through the server; both exit with ``code`` and print the same on stdout and the same
    error on stderr (a transfer's progress lines before it may differ)."""
    local, remote = run("--local", *args, stdin=""), run("--remote", server, *args, stdin="")
    assert local[0] == remote[0] == code, (local, remote)
    assert (local[1], _error(local[2])) == (remote[1], _error(remote[2])), (local, remote)
    return local[0], local[1], _error(local[2])


def _error(err: str) -> str:
    return err[err.find("error: "):]


def test_exec_without_a_guest_agent_says_how_to_add_one(server: str) -> None:
    err = same(server, "exec", "test", "--", "uname", "-a", code=4)[2]
    assert err.startswith("error: VM test has no guest agent channel")
    assert "<target type='virtio' name='org.qemu.guest_agent.0'/>" in err and "then restart the VM" in err


def test_exec_refusals(server: str) -> None:
    assert same(server, "exec", "nobody", "--", "true", code=3)[2].startswith("error: ")
    assert "is not KEY=VALUE" in same(server, "exec", "--env", "1A=b", "test", "--", "true", code=2)[2]
    assert "greater than 0" in same(server, "exec", "--timeout", "0", "test", "--", "true", code=2)[2]


def test_cp_refusals(server: str, tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_text("hello\n")
    err = same(server, "cp", str(local), str(tmp_path / "g"), code=2)[2]
    assert "one of SRC and DST must be VM:/PATH" in err
    assert "no local file" in same(server, "cp", str(tmp_path / "missing"), "test:/tmp/x", code=3)[2]
    assert "not a regular file" in same(server, "cp", str(tmp_path), "test:/tmp/x", code=2)[2]
    assert "holds '..'" in same(server, "cp", str(local), "test:/tmp/../etc/x", code=2)[2]
    assert "no guest agent channel" in same(server, "cp", str(local), "test:/tmp/f.txt", code=4)[2]
    assert "no guest agent channel" in same(server, "cp", "test:/etc/hostname", str(tmp_path), code=4)[2]
    assert not (tmp_path / "hostname").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
