"""VM sub-commands through the server (snapshot, disk, nic, set, clone, backup, export/import, save/restore, ip,
console): the same output and exit codes as in library mode.

As in test_cli_through_server: a server runs in this process over libvirt's test driver, and each command runs
as its own process, once with ``--local`` (a fresh test driver) and once through the server. Commands that
change the VM run locally first, then through the server, so both start from the same state.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.server import ServerConnection, unix_serve

from kvmhub.client import console as remote_console
from kvmhub.client.transport import Transport
from kvmhub.client.websocket import open_websocket
from tests.unit.cli_server import Result, run, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address




def same(server: str, *args: str, code: int = 0) -> Result:
    """Run locally and through the server; both exit with ``code`` and print the same (first line of stderr: the
    message, without the progress lines before it)."""
    local, remote = run("--local", *args), run("--remote", server, *args)
    assert local[0] == remote[0] == code, (local, remote)
    assert local[1] == remote[1], (local, remote)
    assert _said(local[2]) == _said(remote[2]), (local, remote)
    return remote


def _said(err: str) -> list[str]:
    """What a command said on stderr, without progress lines (a phase or an elapsed time)."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("  ", "·", "…"))][-1:]


def test_snapshots(server: str) -> None:
    assert same(server, "snapshot", "ls", "test", "--json")[1].strip() == "[]"
    assert "VM test has no snapshots" in same(server, "snapshot", "ls", "test")[2]
    # the test driver takes no snapshot of a raw disk: the refusal (and its hint) reads the same
    err = same(server, "snapshot", "create", "test", "s1", code=4)[2]
    assert "internal snapshots need qcow2" in err and "`kvmhub snapshot create test s1 --disk-only`" in err
    same(server, "snapshot", "create", "nope", code=3)
    same(server, "snapshot", "show", "test", "nope", code=3)
    same(server, "snapshot", "revert", "test", "nope", code=3)
    same(server, "snapshot", "rm", "nope", "s1", code=3)


def test_disks(server: str) -> None:
    out = same(server, "disk", "ls", "test", "--json")[1]
    assert [d["target"] for d in json.loads(out)] == ["vda"]
    assert "/guest/diskimage1" in same(server, "disk", "ls", "test")[1]
    same(server, "disk", "ls", "nope", code=3)
    same(server, "disk", "rm", "test", "vdz", code=3)
    same(server, "disk", "resize", "test", "vdz", "2G", code=3)
    assert "virDomainBlockResize" in same(server, "disk", "resize", "test", "vda", "2000G", code=5)[2]
    same(server, "disk", "add", "nope", "--size", "1G", code=3)


def test_nics(server: str) -> None:
    out = same(server, "nic", "ls", "test", "--json")[1]
    assert [n["mac"] for n in json.loads(out)] == ["aa:bb:cc:dd:ee:ff"]
    assert "aa:bb:cc:dd:ee:ff  default" in same(server, "nic", "ls", "test")[1]
    same(server, "nic", "rm", "test", "7", code=3)
    same(server, "nic", "rm", "test", "aa:bb:cc:dd:ee:00", code=3)
    same(server, "nic", "set", "test", "0", "--link", "sideways", code=2)
    same(server, "nic", "set", "nope", "0", "--link", "down", code=3)
    # the test driver changes no device: the same refusal, the NIC named by index either way
    assert "virDomainUpdateDeviceFlags" in same(server, "nic", "set", "test", "0", "--link", "down", code=5)[2]
    same(server, "nic", "add", "nope", "--network", "default", code=3)


def test_save_and_restore(server: str) -> None:
    same(server, "restore", "test", code=4)  # nothing saved yet
    same(server, "save", "nope", code=3)
    same(server, "save", "test", "--file", "relative", code=2)
    err = same(server, "save", "test")[2]
    assert "VM test saved (managed save); `kvmhub restore test` or `kvmhub start` resumes it" in err
    code, out, _err = run("--remote", server, "show", "test", "--json")
    assert json.loads(out)["state"] == "shut off"
    code, _out, err = run("--remote", server, "restore", "test", "--running", "--paused")
    assert code == 2 and "--running and --paused contradict each other" in err
    code, _out, err = run("--remote", server, "restore", "test")
    assert code == 0 and "VM test restored; it is running" in err, err
    code, out, _err = run("--remote", server, "show", "test", "--json")
    assert json.loads(out)["state"] == "running"


def test_clone(server: str) -> None:
    err = same(server, "clone", "test", "copy", code=4)[2]
    assert "cannot clone VM test: it is running" in err
    same(server, "clone", "nope", "copy", code=3)
    same(server, "clone", "test", "bad/name", code=2)


def test_set(server: str) -> None:
    assert same(server, "set", "test", "--cpus", "1", "--autostart")[1].splitlines() == [
        "VM test: autostart on: applied live", "VM test: vCPUs 1: applied live"]
    same(server, "set", "nope", "--cpus", "1", code=3)
    same(server, "set", "test", "--cpus", "0", code=2)
    same(server, "set", "test", "--cpus", "1", "--firewall", "bogus", code=2)
    # the test driver changes no device: the same refusal from the firewall either way
    assert "virDomainUpdateDeviceFlags" in same(server, "set", "test", "--firewall", "off", code=5)[2]
    run("--remote", server, "set", "test", "--no-autostart")


def test_ip(server: str) -> None:
    # the test driver's lease follows the domain's id, which a restore on the server changes: compare the rest
    local, remote = run("--local", "ip", "test", "--json"), run("--remote", server, "ip", "test", "--json")
    assert local[0] == remote[0] == 0
    rows = [json.loads(out) for out in (local[1], remote[1])]
    assert [[(a["mac"], a["source"], a["prefix"], a["ip"].startswith("192.168.122.")) for a in r] for r in rows] == [
        [("aa:bb:cc:dd:ee:ff", "lease", 24, True)]] * 2
    local, remote = run("--local", "ip", "test"), run("--remote", server, "ip", "test")
    assert local[1].startswith("192.168.122.") and remote[1] == rows[1][0]["ip"] + "\n"
    assert _said(local[2]) == _said(remote[2]) == ["(from lease)"]
    same(server, "ip", "nope", code=3)
    # a VM without a guest agent or kvmhub's serial markers (one virsh made) is networked once it has a lease
    local, remote = run("--local", "ip", "test", "--wait", "--timeout", "1"), \
        run("--remote", server, "ip", "test", "--wait", "--timeout", "1")
    assert local[0] == remote[0] == 0 and local[1].startswith("192.168.122.") and remote[1].startswith("192.168.122.")


def test_backups(server: str) -> None:
    assert "VM test has no backups" in same(server, "backup", "ls", "test")[2]
    assert same(server, "backup", "ls", "test", "--json")[1].strip() == "[]"
    same(server, "backup", "ls", "nope", code=3)
    same(server, "backup", "nope", "--to", "/tmp/kvmhub-none", code=3)
    # the test driver's VMs live on no host kvmhub can read: the same refusal for every backup verb
    for args in (("test", "--to", "/tmp/kvmhub-none"), ("verify", "/tmp/kvmhub-none"),
                 ("restore", "test", "--from", "/tmp/kvmhub-none")):
        assert "backups need the VM's host to be this machine" in same(server, "backup", *args, code=5)[2]


def test_console_refusals_and_log(server: str) -> None:
    err = same(server, "console", "test", code=4)[2]
    assert "VM test has no serial console" in err
    same(server, "console", "nope", code=3)
    err = same(server, "console", "test", "--log", code=5)[2]
    assert "`kvmhub console test`" in err
    same(server, "console", "nope", "--log", code=3)


def test_console_keystrokes_go_both_ways_until_the_escape_key(tmp_path: Path) -> None:
    """The client's pump against a console that answers each keystroke in capitals: what was typed before Ctrl-]
    reaches it, its answer reaches standard output, nothing after Ctrl-] is sent."""
    received: list[bytes] = []

    def console(ws: ServerConnection) -> None:
        ws.send(b"login: ")
        for message in ws:
            data = message if isinstance(message, bytes) else message.encode()
            received.append(data)
            ws.send(data.upper())

    sock = tmp_path / "console.sock"
    with unix_serve(console, str(sock)) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        read_fd, write_fd = os.pipe()
        out = io.BytesIO()
        conn = open_websocket(Transport(f"unix:{sock}"), "/vms/guest/console")
        done = threading.Thread(target=remote_console.attach, args=(conn, "guest"),
                                kwargs={"stdin_fd": read_fd, "stdout": out})
        done.start()
        os.write(write_fd, b"root\r")
        deadline = time.monotonic() + 10
        while b"ROOT\r" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.write(write_fd, b"ls" + bytes([remote_console.ESCAPE]) + b"never")
        done.join(10)
        srv.shutdown()
        os.close(write_fd)
        os.close(read_fd)
    assert not done.is_alive()
    assert out.getvalue().startswith(b"login: ROOT\r")
    assert b"".join(received) == b"root\rls"


def test_export(server: str, tmp_path: Path) -> None:
    local = run("--local", "export", "test", "--to", str(tmp_path / "test.tar.gz"))
    remote = run("--remote", server, "export", "test")
    assert local[0] == remote[0] == 4 and _said(local[2]) == _said(remote[2])
    assert "cannot export VM test: it is running" in local[2]
    local = run("--local", "export", "nope", "--to", str(tmp_path / "nope.tar.gz"))
    remote = run("--remote", server, "export", "nope")
    assert local[0] == remote[0] == 3 and _said(local[2]) == _said(remote[2])
    # a path on the caller's machine cannot be honoured by a server writing on its host: refused, not ignored
    code, _out, err = run("--remote", server, "export", "test", "--to", str(tmp_path / "test.tar.gz"))
    assert code == 2 and "the server writes the archive in its exports directory on its own host" in err
    code, _out, err = run("--local", "export", "test")
    assert code == 2 and "--to is needed" in err


def test_import_uploads_the_archive_first(server: str, tmp_path: Path) -> None:
    same(server, "import", str(tmp_path / "none.tar.gz"), code=3)
    archive = tmp_path / "vm.tar.gz"
    archive.write_bytes(b"not an archive")
    err = same(server, "import", str(archive), "--pool", "nope", code=3)[2]
    assert "no storage pool 'nope'" in err

    # through the server the archive is first uploaded into the pool (a test-driver pool takes no upload)
    code, _out, err = run("--remote", server, "import", str(archive), "--pool", "default-pool")
    assert code == 5 and "uploading vm.tar.gz to the server" in err and "virStorageVolUpload" in err
    code, out, _err = run("--remote", server, "ops", "ls", "--json")
    assert [(o["kind"], o["state"]) for o in json.loads(out)[:1]] == [("volume.upload", "failed")]
