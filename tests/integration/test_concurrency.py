"""Many kvmhub processes at once on one host: 50 creates and 50 removes side by side, and same-name races.

Every command runs as its own `kvmhub` process, all started before any is waited for, as users (or scripts)
running commands in parallel would.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lxml import etree

from kvmhub.services.storage import default_pools as pools
from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, LAB_NET, Result, Runner
from tests.integration.crash import differences, host_state

N_VMS = 50
WHOLE_TEST_S = 240.0  # 50 creates + 50 removes on 2 shared cores, no guest booting (--no-start)
CLEAN_FAILURE_CODES = {1, 4, 5, 6}


def run_at_once(host: TestHost, commands: Sequence[Sequence[str]], timeout: float) -> list[Result]:
    """Start every ``kvmhub ARGS`` process, then wait for them all; their results in the same order."""
    env = {**os.environ, **host.env()}
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="kvmhub-concur-") as tmp:
        procs = []
        for i, argv in enumerate(commands):
            out = open(Path(tmp) / f"{i}.out", "w+")  # noqa: SIM115 - closed below, after the wait
            err = open(Path(tmp) / f"{i}.err", "w+")  # noqa: SIM115
            procs.append((subprocess.Popen([*KVMHUB, *argv], stdout=out, stderr=err, text=True, env=env), out, err))
        results = []
        try:
            for proc, out, err in procs:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                out.seek(0)
                err.seek(0)
                results.append(Result(code, out.read(), err.read()))
        finally:
            for proc, out, err in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                out.close()
                err.close()
    return results


def _assert_clean_failure(name: str, r: Result) -> None:
    assert r.code in CLEAN_FAILURE_CODES, f"{name}: exit {r.code}\n{r.err}{r.out}"
    assert r.err.strip() and "Traceback" not in r.err, f"{name}: no clear message\n{r.err}"


def _net_tree(host: TestHost, net: str) -> etree._Element:
    return etree.fromstring(host.virsh("net-dumpxml", net).stdout.encode())


def _vm_mac(host: TestHost, name: str) -> str:
    tree = etree.fromstring(host.virsh("dumpxml", name, "--inactive").stdout.encode())
    macs = [m.get("address", "").lower() for m in tree.iterfind("devices/interface/mac")]
    assert len(macs) == 1, macs
    return macs[0]


def _leftovers(host: TestHost, name: str) -> list[str]:
    """What a create of ``name`` may have made that is still on the host."""
    state = host_state(host)
    left = [f"domain {name}"] if name in host.virsh("list", "--all", "--name").stdout.split() else []
    for key, items in state.items():
        left += [f"{key}: {x}" for x in items if key.startswith(("pool ", "net ")) and name in x]
    return left


def test_50_creates_and_50_removes_at_once(prepared_host: TestHost, kvmhub: Runner) -> None:
    host = prepared_host
    names = [f"par{i:02d}" for i in range(N_VMS)]
    before = host_state(host)
    began = time.monotonic()

    created = run_at_once(host, [["create", n, "--image", "tiny", "--network", LAB_NET, "--no-start"]
                                 for n in names], timeout=WHOLE_TEST_S)
    create_s = time.monotonic() - began
    ok = [n for n, r in zip(names, created, strict=True) if r.code == 0]
    failed = {n: r for n, r in zip(names, created, strict=True) if r.code != 0}
    for name, r in failed.items():
        _assert_clean_failure(name, r)
        assert _leftovers(host, name) == [], f"{name} failed but left {_leftovers(host, name)}"
    # a lock timeout or libvirt limit at 50-way would show here, with its message
    assert not failed, {n: r.err.strip().splitlines()[:3] for n, r in failed.items()}

    tree = _net_tree(host, LAB_NET)
    reservations = [(h.get("mac", "").lower(), h.get("ip", ""), h.get("name")) for h in tree.iterfind(".//dhcp/host")]
    macs = [m for m, _, _ in reservations]
    ips = [ip for _, ip, _ in reservations]
    assert len(set(macs)) == len(macs), f"duplicate MAC among reservations: {sorted(macs)}"
    assert len(set(ips)) == len(ips), f"duplicate IP among reservations: {sorted(ips)}"
    by_mac = {m: ip for m, ip, _ in reservations}
    dns: dict[str, list[str]] = {}
    for h in tree.iterfind(".//dns/host"):
        for hostname in h.iterfind("hostname"):
            dns.setdefault(hostname.text or "", []).append(h.get("ip", ""))
    for name in ok:
        mac = _vm_mac(host, name)
        assert mac in by_mac, f"{name} ({mac}) has no reservation on {LAB_NET}"
        assert dns.get(name) == [by_mac[mac]], f"{name}: DNS {dns.get(name)}, reserved {by_mac[mac]}"

    removed = run_at_once(host, [["rm", n] for n in ok], timeout=max(10.0, WHOLE_TEST_S - create_s))
    for name, r in zip(ok, removed, strict=True):
        assert r.code == 0, f"rm {name}: exit {r.code}\n{r.err}"
    assert host_state(host) == before
    assert kvmhub("repair").out.strip() == "nothing to repair"
    assert time.monotonic() - began < WHOLE_TEST_S


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_two_imports_of_one_name_at_once(prepared_host: TestHost, kvmhub: Runner, tiny_image_file: Path) -> None:
    host = prepared_host
    before = host_state(host)
    results = run_at_once(host, [["image", "import", str(tiny_image_file), "--name", "same"]] * 2, timeout=300)
    try:
        codes = sorted(r.code for r in results)
        assert codes == [0, 4], [(r.code, r.err) for r in results]
        loser = next(r for r in results if r.code == 4)
        assert "an image named 'same' already exists" in loser.err, loser.err
        shown = kvmhub("image", "show", "same", "--json").json()
        source_sha = _sha256(tiny_image_file)
        assert shown["sha256"] == source_sha
        assert _sha256(host.inside(shown["path"])) == source_sha  # the stored bytes, not only the record
        r = kvmhub("create", "from-same", "--image", "same", "--no-start")
        assert r.code == 0, r.err
        assert kvmhub("rm", "from-same").code == 0
    finally:
        kvmhub("rm", "from-same")
        kvmhub("image", "rm", "same")
    assert host_state(host) == before


def test_two_creates_of_one_name_at_once(prepared_host: TestHost, kvmhub: Runner) -> None:
    host = prepared_host
    before = host_state(host)
    argv = ["create", "twin", "--image", "tiny", "--network", LAB_NET, "--memory", "128M", "--no-start"]
    results = run_at_once(host, [argv, argv], timeout=180)
    try:
        codes = sorted(r.code for r in results)
        assert codes == [0, 4], [(r.code, r.err) for r in results]
        loser = next(r for r in results if r.code == 4)
        assert "already exists" in loser.err, loser.err
        assert host.virsh("list", "--all", "--name").stdout.split().count("twin") == 1
        assert "twin-disk0.qcow2" in host_state(host)[f"pool {pools.DISKS_POOL}"]
        assert sum(1 for h in _net_tree(host, LAB_NET).iterfind(".//dhcp/host") if h.get("name") == "twin") == 1
        r = kvmhub("start", "twin")
        assert r.code == 0, r.err
        assert host.virsh("domstate", "twin").stdout.strip() == "running"
    finally:
        kvmhub("rm", "twin")
    after = host_state(host)
    assert after == before, differences(before, after)  # rm takes libvirt's QEMU log of a VM kvmhub made too
