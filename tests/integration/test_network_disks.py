"""VMs whose boot disk lives on a network export, reached by QEMU's own NBD and NFS clients.

The servers run inside the test host's namespaces and share its loopback with the guests' QEMU: qemu-nbd
exports a copy of the tiny image, nfs-ganesha (VFS backend, NFSv3 with its own rpcbind) serves a raw copy.
rpcbind and ganesha run in a nested mount and PID namespace so their sockets under /run stay private and
they die with it. Both VMs are started before either is waited for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_run

NBD_PORT = "10899"
NBD_URL = f"nbd://127.0.0.1:{NBD_PORT}/tiny"
NFS_URL = "nfs://127.0.0.1/export/tiny.raw"

GANESHA_CONF = """
NFS_CORE_PARAM {{ Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; Mount_Path_Pseudo = true; }}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = {state}; }}
EXPORT {{
    Export_Id = 1; Path = {export}; Pseudo = /export; Protocols = 3; Transports = TCP;
    Access_Type = RW; Squash = No_Root_Squash; SecType = sys;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"""

# Runs as PID 1 of the nested namespaces: a private /run, then rpcbind and ganesha in the foreground.
NFS_LAUNCHER = """
import subprocess, sys
subprocess.run(["mount", "-t", "tmpfs", "kvmhub-nfs-run", "/run"], check=True)
rpcbind = subprocess.Popen(["rpcbind", "-w", "-f"])
for _ in range(50):
    if subprocess.run(["rpcinfo", "-p", "127.0.0.1"], capture_output=True).returncode == 0:
        break
    __import__("time").sleep(0.1)
ganesha = subprocess.Popen(["ganesha.nfsd", "-F", "-f", sys.argv[1], "-L", sys.argv[2], "-p", sys.argv[3]])
sys.exit(ganesha.wait())
"""


def _missing() -> str | None:
    for tool, package in (("qemu-nbd", "qemu-utils"), ("ganesha.nfsd", "nfs-ganesha"), ("rpcbind", "rpcbind"),
                          ("rpcinfo", "rpcbind")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (package {package})"
    if not any(Path("/usr/lib").glob("*/ganesha/libfsalvfs.so")):
        return "nfs-ganesha's VFS backend is missing (package nfs-ganesha-vfs)"
    return None


def _wait_served(host: TestHost, url: str, proc: subprocess.Popen[bytes], log: Path | None) -> None:
    """Wait until QEMU's own client (qemu-img) reads the export from inside the test host."""
    deadline = time.monotonic() + 60
    while True:
        r = host.run(["qemu-img", "info", "-f", "raw", url], check=False, timeout=30)
        if r.returncode == 0:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            detail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise AssertionError(f"{url} is not served: {r.stderr.strip()}\n{detail}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # SIGKILL: unshare ignores SIGTERM while it waits; its death takes the nested namespaces' processes along
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def servers(
    prepared_host: TestHost, tiny_image_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """The NBD and NFS servers, running; yields the file behind each URL."""
    if (why := _missing()) is not None:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("netdisks")
    base.chmod(0o755)
    nbd_image = base / "nbd.qcow2"
    shutil.copyfile(tiny_image_file, nbd_image)
    export, state = base / "export", base / "state"
    export.mkdir()
    state.mkdir()
    export.chmod(0o777)
    raw = export / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image_file), str(raw)], check=True)
    raw.chmod(0o666)  # QEMU may run as an unprivileged user: the NFS server checks its uid
    conf, log = base / "ganesha.conf", base / "ganesha.log"
    conf.write_text(GANESHA_CONF.format(state=state, export=export))
    procs = []
    try:
        nbd = prepared_host.popen(
            ["qemu-nbd", "-f", "qcow2", "--persistent", "--shared=4", "-x", "tiny", "--bind", "127.0.0.1",
             "-p", NBD_PORT, str(nbd_image)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(nbd)
        nfs = prepared_host.popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
             sys.executable, "-c", NFS_LAUNCHER, str(conf), str(log), str(base / "ganesha.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(nfs)
        _wait_served(prepared_host, NBD_URL, nbd, None)
        _wait_served(prepared_host, NFS_URL, nfs, log)
        yield {NBD_URL: nbd_image, NFS_URL: raw}
    finally:
        for p in procs:
            _stop(p)


def test_vms_boot_from_nbd_and_nfs(prepared_host: TestHost, kvmhub: Runner, servers: dict[str, Path]) -> None:
    vms = {"nbdvm": NBD_URL, "nfsvm": NFS_URL}
    ips = {"nbdvm": "10.77.0.61", "nfsvm": "10.77.0.62"}  # fixed: two creates at once would pick the same one
    try:
        with ThreadPoolExecutor(len(vms)) as pool:
            done = dict(zip(vms, pool.map(
                lambda item: kvmhub("create", item[0], "--disk-url", item[1], "--memory", "192M",
                                    "--network", LAB_NET, "--ip", ips[item[0]], "--wait", "--timeout", "240"),
                vms.items(),
            ), strict=True))
        for vm, r in done.items():
            assert r.code == 0, f"{vm}: {r.err}"
        for vm, url in vms.items():
            rows = kvmhub("disk", "ls", vm, "--json").json()
            vda = next(d for d in rows if d["target"] == "vda")
            assert vda["source"] == url and vda["format"] == "raw" and vda["owned"] is False, vda
            # the guest runs on that disk and writes to it: the bytes land in the file the server exports
            marker = f"kvmhub-netdisk-{vm}-{os.getpid()}"
            w = guest_run(prepared_host, vm, ["/bin/sh", "-c", f"echo {marker} > /mnt/disk/netdisk && sync"])
            assert w.code == 0, w.err
            deadline = time.monotonic() + 30
            while marker.encode() not in servers[url].read_bytes():
                assert time.monotonic() < deadline, f"{vm} wrote {marker}, but it is not in {servers[url]}"
                time.sleep(1)
            r = kvmhub("disk", "resize", vm, "vda", "1G")
            assert r.code == 2 and "network disk" in r.err, r.err
        # a network disk hot-plugged into a running VM: the NBD export, read-only, into the NFS-booted guest
        r = kvmhub("disk", "add", "nfsvm", "--url", NBD_URL, "--readonly")
        assert r.code == 0 and "vdc" in r.err and "attached live" in r.err, r.err
        deadline = time.monotonic() + 90
        while (size := guest_run(prepared_host, "nfsvm", ["cat", "/sys/block/vdc/size"]).out.strip()) != "262144":
            assert time.monotonic() < deadline, f"nfsvm sees vdc as {size!r} sectors, not the 128 MiB export"
            time.sleep(1)
    finally:
        for vm in vms:
            kvmhub("rm", vm)
    # removing the VMs leaves the exports alone
    assert prepared_host.run(["qemu-img", "info", "-f", "raw", NFS_URL], check=False).returncode == 0
