"""`kvmhub image import` from files and from an HTTP server on loopback, as a user runs it.

Checksums good and bad, .xz/.gz sources, HTTP errors, hostile images refused, VMDK and VDI disks that boot
after conversion, and imports that fail half-way (Ctrl-C, a full temporary file system) leaving nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvmhub.services.storage import image_records
from kvmhub.services.storage.default_pools import IMAGES_PATH, IMAGES_POOL
from kvmhub.testing import TestHost
from tests.http_files import Reply, serve
from tests.integration.conftest import KVMHUB, LAB_NET, Runner, ctrl_c_able

IMPORT_TIMEOUT = 300


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=120)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def tiny_bytes(tiny_image_file: Path) -> bytes:
    return tiny_image_file.read_bytes()


@pytest.fixture(scope="module")
def server(tiny_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Loopback HTTP server: the tiny image plain, as .xz and .gz, and a raw file named .qcow2."""
    files = {
        "/tiny.qcow2": Reply(tiny_bytes),
        "/tiny.qcow2.xz": Reply(lzma.compress(tiny_bytes, preset=0)),
        "/tiny-gz": Reply(gzip.compress(tiny_bytes, compresslevel=1)),  # told by its magic, not its name
        "/slow.qcow2": Reply(tiny_bytes, trickle=0.05),
        "/plain.qcow2": Reply(bytes(1024 * 1024)),
    }
    with serve(files) as base:
        yield base


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private TMPDIR for the CLI, to see that an import leaves no temporary file behind."""
    d = tmp_path / "tmp"
    d.mkdir()
    return d, {"TMPDIR": str(d)}


def image_names(kvmhub: Runner) -> list[str]:
    r = kvmhub("image", "ls", "--json")
    assert r.code == 0, r.err
    return [i["name"] for i in r.json()]


def store_files(host: TestHost) -> list[str]:
    return sorted(p.name for p in host.inside(IMAGES_PATH).iterdir())


def test_http_import_verifies_the_checksum_and_records_the_source(
    prepared_host: TestHost, kvmhub: Runner, server: str, tiny_bytes: bytes, tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = tmpdir_env
    url = f"{server}/tiny.qcow2"
    r = kvmhub("image", "import", url, "--name", "web", "--sha256", sha256(tiny_bytes), "--os", "debian12",
               env=env, timeout=IMPORT_TIMEOUT)
    assert r.code == 0, r.err
    assert "nearest debian release" in r.err  # the OS fallback is told
    try:
        info = kvmhub("image", "show", "web", "--json").json()
        assert info["sha256"] == sha256(tiny_bytes) and info["checksum_verified"] == "sha256"
        assert info["source"] == url and info["original_format"] == "qcow2" and info["os"] == "debian11"
        assert info["format"] == "qcow2" and info["virtual_bytes"] == 128 * 1024**2 and info["imported"]
        text = kvmhub("image", "show", "web").out
        assert f"sha256:{sha256(tiny_bytes)} (verified" in text and url in text and "debian11" in text
        # the record is kvmhub's own: the pool holds the image alone
        assert store_files(prepared_host).count("web.qcow2") == 1 and "web.json" not in store_files(prepared_host)
        pool_ls = kvmhub("vol", "ls", IMAGES_POOL)
        assert pool_ls.code == 0 and "web.qcow2" in pool_ls.out and ".json" not in pool_ls.out, pool_ls.out
        assert image_names(kvmhub).count("web") == 1
        assert list(tmp.iterdir()) == []
    finally:
        assert kvmhub("image", "rm", "web").code == 0
    assert "web.qcow2" not in store_files(prepared_host)
    assert image_records.get(prepared_host.uri, IMAGES_POOL, "web.qcow2") is None


def test_a_bad_checksum_imports_nothing(
    prepared_host: TestHost, kvmhub: Runner, server: str, tiny_bytes: bytes, tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = tmpdir_env
    before_ls, before_files = kvmhub("image", "ls").out, store_files(prepared_host)
    wrong = "ab" * 32
    r = kvmhub("image", "import", f"{server}/tiny.qcow2", "--name", "bad", "--sha256", wrong, env=env,
               timeout=IMPORT_TIMEOUT)
    assert r.code == 2, r.err
    assert "checksum mismatch" in r.err and wrong in r.err and sha256(tiny_bytes) in r.err
    assert kvmhub("image", "ls").out == before_ls
    assert store_files(prepared_host) == before_files
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(("path", "kind"), [("/tiny.qcow2.xz", "xz"), ("/tiny-gz", "gz")])
def test_compressed_downloads_are_decompressed(
    path: str, kind: str, prepared_host: TestHost, kvmhub: Runner, server: str,
    tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = tmpdir_env
    name = f"packed-{kind}"
    if kind == "gz":
        env["KVMHUB_HOST_ROOT"] = str(tmp / "elsewhere")  # the pool's files not visible: upload through libvirt
    r = kvmhub("image", "import", server + path, "--name", name, env=env, timeout=IMPORT_TIMEOUT)
    assert r.code == 0, r.err
    try:
        info = kvmhub("image", "show", name, "--json").json()
        assert info["format"] == "qcow2" and info["original_format"] == "qcow2"
        assert info["virtual_bytes"] == 128 * 1024**2
        assert list(tmp.iterdir()) == []
    finally:
        kvmhub("image", "rm", name)


def test_http_errors_are_clear(prepared_host: TestHost, kvmhub: Runner, server: str) -> None:
    r = kvmhub("image", "import", f"{server}/nothing-here.qcow2", "--name", "nope")
    assert r.code == 3 and "HTTP 404" in r.err, r.err
    r = kvmhub("image", "import", "file:///etc/passwd", "--name", "nope")
    assert r.code == 2 and "file: URLs are not supported" in r.err, r.err
    assert "nope" not in image_names(kvmhub)


def _hostile(kind: str, tmp: Path, server: str) -> tuple[list[str], str]:
    """The import arguments for one hostile source and the words its refusal must contain."""
    evil = tmp / "evil.qcow2"
    if kind == "backing-passwd":
        qemu_img("create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", "-u", str(evil), "16M")
        return [str(evil)], "backing file (/etc/passwd)"
    if kind == "data-file":
        qemu_img("create", "-f", "qcow2", "-o", f"data_file={tmp / 'data.raw'}", str(evil), "16M")
        return [str(evil)], "external data file"
    if kind == "vmdk-descriptor":
        # a VMDK split by qemu-img itself, its descriptor's extent retargeted at a host file
        qemu_img("create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", str(tmp / "split.vmdk"), "1M")
        text = (tmp / "split.vmdk").read_text()
        assert '"split-f001.vmdk"' in text
        (tmp / "evil.vmdk").write_text(text.replace('"split-f001.vmdk"', '"/etc/passwd"'))
        return [str(tmp / "evil.vmdk"), "--format", "vmdk"], "VMDK descriptor"
    if kind == "vmdk-descriptor-disguised":
        # QEMU would probe this as a VMDK; named .img it must not pass as raw either
        disguised = tmp / "disk.img"
        disguised.write_text('# exported\n\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                             'createType="monolithicFlat"\nRW 16 FLAT "/etc/passwd" 0\n')
        return [str(disguised)], "VMDK descriptor"
    if kind == "raw-named-qcow2":
        return [f"{server}/plain.qcow2"], "named .qcow2 but its header says raw"
    if kind == "raw-as-qcow2":
        raw = tmp / "plain.img"
        raw.write_bytes(bytes(1024 * 1024))
        return [str(raw), "--format", "qcow2"], "header says raw"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["backing-passwd", "data-file", "vmdk-descriptor", "vmdk-descriptor-disguised",
                                  "raw-named-qcow2", "raw-as-qcow2"])
def test_hostile_images_are_refused(kind: str, prepared_host: TestHost, kvmhub: Runner, server: str,
                                    tmp_path: Path, tmpdir_env: tuple[Path, dict[str, str]]) -> None:
    tmp, env = tmpdir_env
    args, words = _hostile(kind, tmp_path, server)
    before = store_files(prepared_host)
    r = kvmhub("image", "import", *args, "--name", "evil", env=env, timeout=IMPORT_TIMEOUT)
    assert r.code == 2, r.err
    assert words in r.err and "fix:" in r.err, r.err
    assert store_files(prepared_host) == before
    assert "evil" not in image_names(kvmhub)
    assert list(tmp.iterdir()) == []


def test_vmdk_and_vdi_disks_boot_after_conversion(
    prepared_host: TestHost, kvmhub: Runner, server: str, tiny_image_file: Path, tmp_path: Path
) -> None:
    vms = {"vmdk": "vm-from-vmdk", "vdi": "vm-from-vdi"}
    for fmt in vms:
        out = tmp_path / f"tiny.{fmt}"
        qemu_img("convert", "-f", "qcow2", "-O", fmt, str(tiny_image_file), str(out))
        # the vdi as if libvirtd ran elsewhere: converted here, then uploaded through libvirt
        env = {"KVMHUB_HOST_ROOT": str(tmp_path / "elsewhere")} if fmt == "vdi" else {}
        r = kvmhub("image", "import", str(out), "--name", f"tiny-{fmt}", env=env, timeout=IMPORT_TIMEOUT)
        assert r.code == 0, r.err
        assert f"qcow2 from {fmt}" in r.err
        assert kvmhub("image", "show", f"tiny-{fmt}", "--json").json()["original_format"] == fmt
    try:
        for fmt, vm in vms.items():
            r = kvmhub("create", vm, "--image", f"tiny-{fmt}", "--memory", "192M", "--network", LAB_NET)
            assert r.code == 0, r.err
        for vm in vms.values():
            r = kvmhub("ip", vm, "--wait", "--timeout", "240", timeout=300)
            assert r.code == 0 and r.out.strip().startswith("10.77.0."), r.err + r.out
        # the image backs the VM's disk: removal is refused and names the VM
        r = kvmhub("image", "rm", "tiny-vmdk")
        assert r.code == 4 and "vm-from-vmdk" in r.err, r.err
        assert kvmhub("image", "show", "tiny-vdi", "--json").json()["used_by"] == ["vm-from-vdi"]
    finally:
        for vm in vms.values():
            kvmhub("rm", vm)
        for fmt in vms:
            kvmhub("image", "rm", f"tiny-{fmt}")
    assert not {"tiny-vmdk", "tiny-vdi"} & set(image_names(kvmhub))


def test_ctrl_c_during_a_download_leaves_nothing(
    prepared_host: TestHost, server: str, kvmhub: Runner, tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = tmpdir_env
    before = store_files(prepared_host)
    proc = subprocess.Popen([*KVMHUB, "image", "import", f"{server}/slow.qcow2", "--name", "cut"],
                            env={**os.environ, **prepared_host.env(), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_able)

    def started() -> None:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in tmp.glob("kvmhub-import-*/source")):
            assert time.monotonic() < deadline and proc.poll() is None, "the download never started"
            time.sleep(0.1)

    _ctrl_c_once(proc, started)
    assert list(tmp.iterdir()) == []
    assert store_files(prepared_host) == before
    assert "cut" not in image_names(kvmhub)


def test_a_full_temporary_file_system_fails_cleanly(prepared_host: TestHost, server: str, kvmhub: Runner,
                                                    tmp_path: Path) -> None:
    # the CLI runs in its own mount namespace with TMPDIR on a 4 MiB tmpfs; the image decompresses to 20 MiB
    small = tmp_path / "small"
    small.mkdir()
    script = ('mount -t tmpfs -o size=4m tmpfs "$TMPDIR" || exit 99; "$@"; rc=$?; '
              'echo "left: $(ls -A "$TMPDIR")" >&2; exit $rc')
    before = store_files(prepared_host)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *KVMHUB,
                           "image", "import", f"{server}/tiny-gz", "--name", "full"],
                          env={**os.environ, **prepared_host.env(), "TMPDIR": str(small)}, capture_output=True,
                          text=True, timeout=IMPORT_TIMEOUT)
    assert proc.returncode == 5, proc.stderr
    assert "no space left" in proc.stderr and "TMPDIR" in proc.stderr
    assert proc.stderr.rstrip().endswith("left:")  # nothing was left in the temporary directory
    assert store_files(prepared_host) == before
    assert "full" not in image_names(kvmhub)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_a_full_images_pool_leaves_no_partial_volume(fmt: str, prepared_host: TestHost, kvmhub: Runner,
                                                     tiny_image_file: Path, tmp_path: Path) -> None:
    # for this test only, an 8 MiB tmpfs covers the images pool's directory inside the test host
    host = prepared_host
    src = tiny_image_file
    if fmt == "raw":
        src = tmp_path / "random.img"
        src.write_bytes(os.urandom(24 * 1024 * 1024))
    host.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", IMAGES_PATH])
    try:
        host.virsh("pool-refresh", "kvmhub-images")
        r = kvmhub("image", "import", str(src), "--name", "toobig", timeout=IMPORT_TIMEOUT)
        assert r.code == 5, r.err
        assert "no space left" in r.err and "fix:" in r.err, r.err
        assert store_files(host) == []  # no partial volume, no record
    finally:
        host.run(["umount", IMAGES_PATH], check=False)
        host.virsh("pool-refresh", "kvmhub-images", check=False)
    assert "toobig" not in image_names(kvmhub) and "tiny" in image_names(kvmhub)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_ctrl_c_while_storing_into_the_pool_leaves_nothing(
    fmt: str, prepared_host: TestHost, kvmhub: Runner, tiny_image_file: Path, tmp_path: Path,
    tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    # the qcow2 is copied into the pool as is; the raw file, writable by anyone, is first copied privately
    # into TMPDIR and then converted into the pool. Both are caught half-stored by a hanging fault point.
    tmp, env = tmpdir_env
    src = tiny_image_file
    if fmt == "raw":
        src = tmp_path / "random.img"
        src.write_bytes(os.urandom(32 * 1024**2))
        src.chmod(0o666)
    before = store_files(prepared_host)
    env["KVMHUB_INJECT_FAULT"] = "hang:import-store"
    proc = subprocess.Popen([*KVMHUB, "image", "import", str(src), "--name", "cut-store"],
                            env={**os.environ, **prepared_host.env(), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_able)
    assert proc.stdout is not None
    stdout = proc.stdout

    def storing() -> None:
        while "fault point import-store: hanging" not in (line := stdout.readline()):
            assert line, "the import ended before storing: " + proc.communicate(timeout=60)[1]
        assert "cut-store.qcow2" in store_files(prepared_host)  # caught while the volume is being filled
        if fmt == "raw":
            assert [p.name for p in tmp.glob("kvmhub-import-*/*")] == ["source"]

    _ctrl_c_once(proc, storing)
    assert list(tmp.iterdir()) == []
    assert store_files(prepared_host) == before
    assert "cut-store" not in image_names(kvmhub)


def _ctrl_c_once(proc: subprocess.Popen[str], ready: Callable[[], None]) -> None:
    """Wait until `ready` returns, send Ctrl-C, and check the import exits 130 (killed if it lingers)."""
    try:
        ready()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
