"""Storage, network, host and monitoring commands through the server: the same output and exit codes as in
library mode (see test_cli_through_server.py for how both modes run)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_server import URI, Result, both, run, serving

Run = Result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address






# listings empty on the test driver (its pool holds no volumes, its VM no port forwards)
EMPTY_HERE = {("vol", "ls"), ("net", "forward")}


@pytest.mark.parametrize("args", [
    ("pool", "ls", "--json"), ("pool", "show", "default-pool", "--json"), ("pool", "ls"),
    ("vol", "ls", "default-pool", "--json"),
    ("net", "ls", "--json"), ("net", "show", "default", "--json"), ("net", "ls"),
    ("net", "forward", "ls", "--json"),
    ("os", "ls", "debian1", "--json"), ("os", "show", "debian11", "--json"), ("os", "ls", "fedora4"),
], ids=" ".join)
def test_listings_read_the_same(server: str, args: tuple[str, ...]) -> None:
    local, remote = both(server, *args)
    assert local[0] == remote[0] == 0, (local, remote)
    if "--json" in args:
        assert json.loads(local[1]) == json.loads(remote[1])
        assert json.loads(local[1]) or args[:2] in EMPTY_HERE, "an empty listing proves nothing"
    else:
        assert local[1] == remote[1] and local[1].strip()


@pytest.mark.parametrize(("args", "code"), [
    (("pool", "show", "nope"), 3), (("pool", "start", "default-pool"), 4), (("pool", "refresh", "nope"), 3),
    (("vol", "show", "default-pool/nope"), 3), (("vol", "show", "/etc/passwd"), 2), (("vol", "ls", "nope"), 3),
    (("vol", "rm", "default-pool/nope"), 3), (("vol", "resize", "default-pool/nope", "+1M"), 3),
    (("vol", "download", "default-pool/nope", "out.img"), 3), (("vol", "clone", "default-pool/nope", "x"), 3),
    (("vol", "create", "default-pool/x", "--size", "1M", "--format", "bogus"), 2),
    (("pool", "rm", "nope"), 3), (("net", "create", "n1", "--mode", "bogus"), 2),
    (("net", "lease", "rm", "default", "nope"), 3),
    (("net", "show", "nope"), 3), (("net", "start", "default"), 4), (("net", "lease", "ls", "nope"), 3),
    (("net", "lease", "ls", "default"), 5),  # the test driver has no DHCP leases to read
    (("net", "rm", "nope"), 3), (("net", "forward", "ls", "nope"), 3),
    (("image", "show", "[bold]x"), 2), (("image", "rm", "../x"), 2),
    (("os", "show", "nosuchos9"), 2),
    (("top", "--once", "--sort", "bogus"), 2),
], ids=lambda a: " ".join(a) if isinstance(a, tuple) else str(a))
def test_errors_exit_with_the_same_code_and_words(server: str, args: tuple[str, ...], code: int) -> None:
    local, remote = both(server, *args)
    assert local[0] == remote[0] == code, (local, remote)
    assert local[2].splitlines()[0] == remote[2].splitlines()[0]


def test_stats_through_the_server_are_the_servers(server: str) -> None:
    local, remote = both(server, "host", "stats", "--json")
    assert local[0] == remote[0] == 0, remote
    mine, its = json.loads(local[1]), json.loads(remote[1])
    assert (its["uri"], its["vms_defined"], its["cpus"]) == (mine["uri"], mine["vms_defined"], mine["cpus"])
    local, remote = both(server, "top", "--once", "--json", "--interval", "0.1", "--sort", "name")
    assert local[0] == remote[0] == 0, remote
    assert [(v["name"], v["state"]) for v in json.loads(remote[1])] == [
        (v["name"], v["state"]) for v in json.loads(local[1])] == [("test", "running")]
    local, remote = both(server, "top", "--once", "--interval", "0.1")
    assert local[1].splitlines()[0] == remote[1].splitlines()[0] and "test" in remote[1]


def test_volumes_are_made_changed_and_removed_through_the_server(server: str) -> None:
    local, remote = both(server, "vol", "create", "default-pool/data.img", "--size", "8M", "--format", "raw")
    assert local[0] == remote[0] == 0 and local[2] == remote[2], (local, remote)
    assert "volume default-pool/data.img: raw, 8M at /default-pool/data.img" in remote[2]
    assert run("--remote", server, "vol", "create", "default-pool/data.img", "--size", "8M")[0] == 4
    code, out, _err = run("--remote", server, "vol", "show", "default-pool/data.img", "--json")
    assert code == 0 and json.loads(out)["capacity_bytes"] == 8 * 1024**2
    code, _out, err = run("--remote", server, "vol", "rm", "default-pool/data.img")
    assert code == 0 and "volume default-pool/data.img removed" in err
    assert run("--remote", server, "vol", "show", "default-pool/data.img")[0] == 3


def test_an_upload_sends_the_callers_file_with_progress(server: str, tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(os.urandom(1024**2))
    local, remote = both(server, "vol", "upload", "default-pool/up.raw", str(image))
    # the test driver stores no bytes: both refuse alike, and nothing is left behind through the server
    assert local[0] == remote[0] == 5 and "virStorageVolUpload" in remote[2], remote
    assert local[2].splitlines()[-2:] == remote[2].splitlines()[-2:]
    assert "uploading disk.raw: 100% of 1M" in remote[2]
    assert run("--remote", server, "vol", "show", "default-pool/up.raw")[0] == 3
    local, remote = both(server, "vol", "upload", "default-pool/up.raw", str(tmp_path))
    assert local[0] == remote[0] == 2 and local[2] == remote[2] and "is not a regular file" in local[2]
    local, remote = both(server, "vol", "upload", "default-pool/up.raw", str(image), "--format", "vmdk")
    assert local[0] == remote[0] == 2 and local[2] == remote[2] and "volumes take qcow2 or raw" in local[2]


def test_images_need_the_hosts_image_pool_either_way(server: str, tmp_path: Path) -> None:
    local, remote = both(server, "image", "ls", "--json")
    assert local[0] == remote[0] == 3 and local[2] == remote[2] and "no storage pool 'kvmhub-images'" in local[2]
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(64 * 1024))
    local, remote = both(server, "image", "import", str(image), "--name", "im1")
    assert local[0] == remote[0] == 3 and local[2].splitlines()[-2:] == remote[2].splitlines()[-2:], remote
    assert "uploading" not in remote[2]  # refused before the file was sent


def test_a_pool_is_made_and_removed_through_the_server(server: str, tmp_path: Path) -> None:
    args = ("pool", "create", "lab", "--type", "dir", "--path", str(tmp_path / "lab"))
    local, remote = both(server, *args)
    assert local[0] == remote[0] == 0, remote
    assert local[2].splitlines()[-1] == remote[2].splitlines()[-1] == \
        f"pool lab: dir, active, 100G available, at {tmp_path / 'lab'}"
    try:
        assert run("--remote", server, *args)[0] == 4
        code, out, _err = run("--remote", server, "pool", "show", "lab", "--json")
        assert code == 0 and json.loads(out)["path"] == str(tmp_path / "lab")
        code, _out, err = run("--remote", server, "pool", "stop", "lab")
        assert code == 0 and "pool lab stopped" in err
        code, _out, err = run("--remote", server, "pool", "start", "lab")
        assert code == 0 and "pool lab started" in err
    finally:
        code, _out, err = run("--remote", server, "pool", "rm", "lab")
    assert code == 0 and "pool lab removed" in err
    assert run("--remote", server, "pool", "show", "lab")[0] == 3


def test_host_check_reports_the_servers_host(server: str) -> None:
    local, remote = both(server, "host", "check", "--json")
    assert local[0] == remote[0] and local[0] in (0, 5)
    mine, its = json.loads(local[1]), json.loads(remote[1])
    assert its["uri"] == mine["uri"] == URI
    assert [(c["name"], c["status"]) for c in its["checks"]] == [(c["name"], c["status"]) for c in mine["checks"]]


def test_networks_are_made_and_removed_through_the_server(server: str) -> None:
    args = ("net", "create", "lab", "--subnet", "10.77.0.0/24")
    local, remote = both(server, *args)
    assert local[0] == remote[0] == 0 and local[2] == remote[2], (local, remote)
    try:
        assert run("--remote", server, *args)[0] == 4
        code, out, _err = run("--remote", server, "net", "show", "lab", "--json")
        assert code == 0 and json.loads(out)["subnet"] == "10.77.0.0/24"
        code, _out, err = run("--remote", server, "net", "stop", "lab")
        assert code == 0 and "network lab stopped" in err
        code, _out, err = run("--remote", server, "net", "autostart", "lab", "--off")
        assert code == 0 and "network lab: autostart off" in err
        code, out, _err = run("--remote", server, "net", "show", "lab", "--json")
        assert (json.loads(out)["active"], json.loads(out)["autostart"]) == (False, False)
    finally:
        code, _out, err = run("--remote", server, "net", "rm", "lab")
    assert code == 0 and "network lab removed" in err
    assert run("--remote", server, "net", "show", "lab")[0] == 3


def _cli(*args: str) -> subprocess.Popen[str]:
    """A streaming command, started (its first line on stderr says it is listening)."""
    env = {**os.environ, "KVMHUB_URI": "", "KVMHUB_REMOTE": ""}
    return subprocess.Popen([sys.executable, "-m", "kvmhub.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_events_stream_the_servers_events_as_library_mode_prints_them(server: str) -> None:
    watcher = _cli("--remote", server, "events", "--vm", "test", "--count", "2", "--for", "60", "--json")
    try:
        assert watcher.stderr is not None and "watching events of test on test:///default" in watcher.stderr.readline()
        assert run("--remote", server, "pause", "test")[0] == 0
        assert run("--remote", server, "resume", "test")[0] == 0
        out, _err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    events = [json.loads(line) for line in out.splitlines()]
    uuid = json.loads(run("--remote", server, "show", "test", "--json")[1])["uuid"]
    assert [(e["vm"], e["uuid"], e["kind"], e["event"]) for e in events] == [
        ("test", uuid, "lifecycle", "suspended"), ("test", uuid, "lifecycle", "resumed")]
    assert watcher.returncode == 0
    local, remote = both(server, "events", "--vm", "nope", "--for", "1")
    assert local[0] == remote[0] == 3 and local[2] == remote[2]


def test_metrics_through_the_server_serve_its_scrape(server: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    relay = _cli("--remote", server, "metrics", "--listen", f"127.0.0.1:{port}")
    try:
        assert relay.stderr is not None
        assert f"serving metrics on http://127.0.0.1:{port}/metrics" in relay.stderr.readline()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        answer = conn.getresponse()
        body = answer.read().decode()
        conn.close()
    finally:
        relay.terminate()
        relay.wait(10)
    assert answer.status == 200 and 'kvmhub_vm_running{vm="test"} 1.0' in body
    assert relay.returncode == 0
    local, remote = both(server, "metrics", "--listen", "127.0.0.1:99999")
    assert local[0] == remote[0] == 2 and local[2] == remote[2]


def test_commands_that_change_this_machine_are_not_sent_to_a_remote_server() -> None:
    for args in (("host", "setup"), ("net", "bridge", "create", "br9", "--from", "eth9")):
        code, _out, err = run("--remote", "http://127.0.0.1:9", *args)
        assert code == 2, err
        assert f"`kvmhub {' '.join(args[:2]) if args[0] == 'net' else 'host setup'}` changes the machine it runs on" \
            in err
