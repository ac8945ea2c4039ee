"""A create that fails, or is refused, leaves nothing behind; a stalled libvirtd never hangs the CLI."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner


def leftovers(host: TestHost, name: str) -> list[str]:
    found = []
    if name in host.virsh("list", "--all", "--name").stdout.split():
        found.append(f"domain {name}")
    vols = host.virsh("vol-list", "default").stdout
    found += [line.split()[0] for line in vols.splitlines() if line.strip().startswith(name + "-")]
    return found


@pytest.mark.parametrize("step", ["clone-disk", "build-seed", "reserve-address", "define", "start"])
def test_failure_at_each_step_is_undone(step: str, prepared_host: TestHost, kvmhub: Runner) -> None:
    name = f"fail-{step}"
    r = kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--memory", "128M",
               env={"KVMHUB_INJECT_FAULT": step})
    assert r.code == 1, r.err
    assert f"injected failure after step {step!r}" in r.err
    assert "undo:" in r.err
    assert leftovers(prepared_host, name) == []
    assert f"'{name}'" not in prepared_host.virsh("net-dumpxml", LAB_NET).stdout  # no reservation or DNS left


@pytest.mark.parametrize(
    "name", ["bad<name>", "a&b", "it's", 'q"x', "x; touch /tmp/kvmhub-pwned", "../escape", "-dash", "x" * 64]
)
def test_hostile_names_are_refused_and_nothing_changes(name: str, prepared_host: TestHost, kvmhub: Runner) -> None:
    before = prepared_host.virsh("vol-list", "default").stdout
    r = kvmhub("create", "--image", "tiny", "--network", LAB_NET, "--", name)
    assert r.code == 2, r.err
    assert "invalid VM name" in r.err and "letters, digits" in r.err
    assert prepared_host.virsh("vol-list", "default").stdout == before
    assert not os.path.exists("/tmp/kvmhub-pwned")


@pytest.mark.parametrize("name", ["[/x]", "[bold]x", "[red]", "x:thumbs_up:"])
def test_markup_in_names_is_refused_and_printed_as_given(name: str, prepared_host: TestHost, kvmhub: Runner,
                                                          tmp_path: Path) -> None:
    def objects() -> list[str]:
        return [prepared_host.virsh(*cmd).stdout for cmd in (("list", "--all", "--name"), ("vol-list", "default"),
                                                             ("vol-list", "kvmhub-images"), ("net-list", "--all"))]

    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 65536)
    before = objects()
    for args, words in [
        (("create", "--image", "tiny", "--network", LAB_NET, "--", name), "invalid VM name"),
        (("show", "--", name), "invalid VM name"),
        (("rm", "--", name), "invalid VM name"),
        (("image", "import", str(disk), "--name", name), "invalid image name"),
        (("net", "create", "--", name), "invalid network name"),
        (("snapshot", "create", "taken-or-not", name), "invalid snapshot name"),
    ]:
        r = kvmhub(*args)
        assert r.code == 2, f"{args}: {r.err}"
        assert r.err.startswith(f"error: {words} {name!r}\n"), f"{args}: {r.err}"
    user_data = tmp_path / f"ud{name}"
    r = kvmhub("create", "ud-literal", "--image", "tiny", "--user-data", str(user_data))
    assert r.code == 2 and f"{user_data}" in r.err and "Traceback" not in r.err, r.err
    assert objects() == before


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--memory", "lots"], 2, "invalid memory"),
        (["--disk", "10X"], 2, "unknown unit"),
        (["--cpus", "0"], 2, "out of range"),
        (["--network", "no-such-net"], 3, "no network 'no-such-net'"),
    ],
)
def test_bad_options_are_refused(args: list[str], code: int, words: str, prepared_host: TestHost,
                                 kvmhub: Runner) -> None:
    r = kvmhub("create", "opt-check", "--image", "tiny", *args)
    assert r.code == code, r.err
    assert words in r.err
    assert leftovers(prepared_host, "opt-check") == []


def test_unknown_image_and_taken_name(prepared_host: TestHost, kvmhub: Runner) -> None:
    r = kvmhub("create", "img-check", "--image", "nope")
    assert r.code == 3 and "no image named 'nope'" in r.err and "kvmhub image ls" in r.err
    assert kvmhub("create", "taken", "--image", "tiny", "--no-start").code == 0
    try:
        r = kvmhub("create", "taken", "--image", "tiny", "--no-start")
        assert r.code == 4 and "already exists" in r.err
    finally:
        assert kvmhub("rm", "taken").code == 0
    assert leftovers(prepared_host, "taken") == []


def test_bad_user_data_names_its_line(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    ud = tmp_path / "user-data"
    ud.write_text("#cloud-config\nhostname: x\nruncmd:\n  - [unclosed\n")
    r = kvmhub("create", "ud-check", "--image", "tiny", "--user-data", str(ud))
    assert r.code == 2 and "not valid YAML at line" in r.err
    assert leftovers(prepared_host, "ud-check") == []


def test_image_in_use_cannot_be_removed(prepared_host: TestHost, kvmhub: Runner) -> None:
    assert kvmhub("create", "holder", "--image", "tiny", "--no-start").code == 0
    try:
        r = kvmhub("image", "rm", "tiny")
        assert r.code == 4 and "holder" in r.err
    finally:
        kvmhub("rm", "holder")


def test_a_domain_defined_with_virsh_shows_in_kvmhub(prepared_host: TestHost, kvmhub: Runner,
                                                     tmp_path: Path) -> None:
    xml = tmp_path / "d.xml"
    xml.write_text(
        "<domain type='qemu'><name>from-virsh</name><memory unit='MiB'>64</memory><vcpu>2</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    prepared_host.virsh("define", str(xml))
    try:
        rows = {v["name"]: v for v in kvmhub("ls", "--json").json()}
        assert rows["from-virsh"]["state"] == "shut off"
        assert rows["from-virsh"]["vcpus"] == 2
        shown = kvmhub("show", "from-virsh", "--json").json()
        assert shown["managed"] is False and shown["memory_mib"] == 64
    finally:
        prepared_host.virsh("undefine", "from-virsh")


def test_stalled_libvirtd_gives_a_timeout_not_a_hang(prepared_host: TestHost, kvmhub: Runner) -> None:
    pid = int((prepared_host.dir / "run" / "libvirtd.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        r = kvmhub("--timeout", "3", "ls", timeout=60)
        elapsed = time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.code == 6, r.err
    assert "no answer from libvirt" in r.err
    assert elapsed < 30
    assert kvmhub("ls").code == 0  # and it works again once the daemon does


@pytest.mark.parametrize("step", ["build-seed", "define"])
def test_ctrl_c_during_create_is_undone(step: str, prepared_host: TestHost) -> None:
    import subprocess

    from tests.integration.conftest import KVMHUB, ctrl_c_able

    name = f"intr-{step}"
    env = {**os.environ, **prepared_host.env(), "KVMHUB_INJECT_FAULT": f"hang:{step}"}
    proc = subprocess.Popen([*KVMHUB, "create", name, "--image", "tiny", "--network", LAB_NET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_able)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"fault point {step}: hanging" in line
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "undo:" in err
    assert leftovers(prepared_host, name) == []


def test_wait_timeout_names_the_phase_that_never_came(prepared_host: TestHost, kvmhub: Runner) -> None:
    r = kvmhub("create", "slowpoke", "--image", "tiny", "--network", LAB_NET, "--memory", "128M",
               "--wait", "--timeout", "0.5")
    try:
        assert r.code == 6, r.err
        assert "did not become" in r.err and "within 0.5 s (it is" in r.err
        assert "kvmhub console slowpoke --log" in r.err
    finally:
        assert kvmhub("rm", "slowpoke").code == 0
