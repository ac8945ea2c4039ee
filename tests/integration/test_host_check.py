"""`kvmhub host check` answers KVM or TCG from a real probe boot, within its time limit, never hanging."""

from __future__ import annotations

import time

from kvmhub.services.host import accel
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner


def test_host_check_reports_the_accelerator_from_a_real_probe(test_host: TestHost, kvmhub: Runner) -> None:
    start = time.monotonic()
    r = kvmhub("host", "check", "--json", "--reprobe", timeout=180)
    elapsed = time.monotonic() - start
    assert r.code in (0, 5), r.err
    report = r.json()
    assert elapsed < accel.PROBE_TIMEOUT + 60
    assert report["accelerator"] in ("kvm", "tcg")
    assert report["domain_type"] == ("kvm" if report["accelerator"] == "kvm" else "qemu")
    item = next(c for c in report["checks"] if c["name"] == "accelerator")
    # an independent boot under KVM agrees with what the check decided
    from kvmhub.tools.tiny.build import build_probe_initramfs

    kernel, initrd = build_probe_initramfs(accel.STATE_DIR / "probe")
    kvm_boots, _detail = accel.boot_probe("kvm", kernel, initrd)
    assert report["accelerator"] == ("kvm" if kvm_boots else "tcg"), item
    if not kvm_boots:
        assert "KVM unusable, using TCG emulation" in item["detail"]
    # the probe kernel itself is sound: it boots under TCG
    tcg_boots, detail = accel.boot_probe("tcg", kernel, initrd, timeout=60)
    assert tcg_boots, detail


def test_host_check_names_the_daemon_fix_when_libvirtd_is_unreachable(kvmhub: Runner, tmp_path: object) -> None:
    r = kvmhub("host", "check", "--json", env={"KVMHUB_URI": f"qemu+unix:///system?socket={tmp_path}/none"})
    assert r.code == 5
    item = next(c for c in r.json()["checks"] if c["name"] == "libvirtd")
    assert item["status"] == "fail" and "libvirtd -d" in item["fix"]
