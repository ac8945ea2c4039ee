"""Encrypted disks on a private test host, without booting (test_clone.py boots an encrypted VM and checks
that what its guest writes is not on the host in clear): the keys' secrets, `create --encrypt`, undo,
removal, and the clones kvmhub refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.models import KvmhubMeta
from kvmhub.services.storage import encryption
from kvmhub.testing import TestHost
from kvmhub.xml.domain import domain_from_xml, domain_to_xml
from kvmhub.xml.secret import secret_usage_from_xml
from tests.integration.conftest import Result, Runner

DISKS = "/var/lib/libvirt/images"


def _ok(kvmhub: Runner, *args: str, env: dict[str, str] | None = None) -> Result:
    r = kvmhub(*args, env=env, timeout=300)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r


def _secrets(host: TestHost) -> set[str]:
    return set(host.virsh("secret-list").stdout.split())


def _volumes(host: TestHost) -> set[str]:
    return {line.split()[0] for line in host.virsh("vol-list", "default").stdout.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def enc_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """A tiny VM with an encrypted disk, never started; the module's last test removes it (else teardown)."""
    _ok(kvmhub, "create", "enc-idle", "--image", "tiny", "--memory", "192M", "--encrypt", "--no-start")
    try:
        yield "enc-idle"
    finally:
        kvmhub("rm", "enc-idle")


def test_disk_secret_is_private_and_deleted_once(prepared_host: TestHost) -> None:
    host = prepared_host
    with Hypervisor(host.uri) as hv:
        uuid = encryption.new_disk_secret(hv, "somevm", "vdb")
        try:
            assert uuid in _secrets(host)
            usage = secret_usage_from_xml(host.virsh("secret-dumpxml", uuid).stdout)
            assert usage is not None and usage.startswith("/kvmhub/somevm/vdb/")
            leak = host.virsh("secret-get-value", uuid, check=False)
            assert leak.returncode != 0 and "private" in (leak.stderr + leak.stdout).lower()
        finally:
            encryption.delete_secret(hv, uuid)
        assert uuid not in _secrets(host)
        encryption.delete_secret(hv, uuid)  # already gone: no error


def test_create_encrypt_makes_a_luks_disk_keyed_by_its_own_secret(prepared_host: TestHost, kvmhub: Runner,
                                                                  enc_vm: str) -> None:
    host = prepared_host
    shown = _ok(kvmhub, "show", enc_vm, "--json").json()
    secret = shown["disks"][0]["encryption_secret"]
    assert secret in _secrets(host)
    assert shown["disks"][1]["encryption_secret"] is None  # the seed is not encrypted
    assert f"default/{enc_vm}-disk0.qcow2 encrypted" in _ok(kvmhub, "show", enc_vm).out
    info = json.loads(host.run(["qemu-img", "info", "--output=json", "-f", "qcow2",
                                f"{DISKS}/{enc_vm}-disk0.qcow2"]).stdout)
    assert info["encrypted"] is True and info["format-specific"]["data"]["encrypt"]["format"] == "luks"
    assert info["backing-filename"].endswith("/tiny.qcow2")  # still a linked clone of the image
    dumped = host.virsh("dumpxml", enc_vm, "--inactive").stdout
    assert f"<kvmhub:owned-secret>{secret}</kvmhub:owned-secret>" in dumped


def test_encrypted_disks_are_not_cloned(kvmhub: Runner, enc_vm: str) -> None:
    full = kvmhub("clone", enc_vm, "enc-copy")
    assert full.code == 4 and "encrypted" in full.err and "cause:" in full.err
    linked = kvmhub("clone", enc_vm, "enc-copy", "--linked")
    assert linked.code == 4 and "encrypted" in linked.err
    assert "enc-copy" not in {v["name"] for v in _ok(kvmhub, "ls", "--json").json()}


def test_failed_encrypted_create_leaves_no_secret(prepared_host: TestHost, kvmhub: Runner) -> None:
    host = prepared_host
    before = _secrets(host), _volumes(host)
    r = kvmhub("create", "enc-fail", "--image", "tiny", "--memory", "192M", "--encrypt", "--no-start",
               env={"KVMHUB_INJECT_FAULT": "define"})
    assert r.code != 0 and "injected" in r.err
    assert (_secrets(host), _volumes(host)) == before


def test_export_of_an_encrypted_vm_is_refused(kvmhub: Runner, enc_vm: str, tmp_path: Path) -> None:
    archive = tmp_path / "enc.tar.gz"
    r = kvmhub("export", enc_vm, "--to", str(archive))
    assert r.code == 4 and "disk vda is encrypted" in r.err, r.err
    assert "private libvirt secret kvmhub cannot read back" in r.err and "fix:" in r.err
    assert list(tmp_path.iterdir()) == []


def test_rm_keeps_the_key_of_a_disk_another_vm_uses(prepared_host: TestHost, kvmhub: Runner) -> None:
    host, vm = prepared_host, "enc-kept"
    _ok(kvmhub, "create", vm, "--image", "tiny", "--memory", "192M", "--encrypt", "--no-start")
    disk, secret = f"{vm}-disk0.qcow2", None
    try:
        with Hypervisor(host.uri) as hv:
            spec = domain_from_xml(hv_domains.lookup(hv, vm).xml(inactive=True))
            secret = spec.disks[0].encryption_secret
            user = spec.model_copy(update={"name": "enc-user", "uuid": None, "nics": [], "serial": None,
                                           "disks": spec.disks[:1], "meta": KvmhubMeta()})
            hv_domains.define(hv, domain_to_xml(user))
        assert secret is not None
        r = _ok(kvmhub, "rm", vm)
        assert f"kept default/{disk}: VM enc-user still uses it" in r.err, r.err
        assert f"kept the key of default/{disk} in libvirt secret {secret}" in r.err
        assert secret in _secrets(host) and disk in _volumes(host)
        assert f"{vm}-seed.iso" not in _volumes(host)
    finally:
        kvmhub("rm", vm)
        kvmhub("rm", "enc-user")
        host.virsh("vol-delete", disk, "--pool", "default", check=False)
        if secret is not None:
            host.virsh("secret-undefine", secret, check=False)


def test_rm_deletes_the_secret(prepared_host: TestHost, kvmhub: Runner, enc_vm: str) -> None:
    host = prepared_host
    secret = _ok(kvmhub, "show", enc_vm, "--json").json()["disks"][0]["encryption_secret"]
    r = _ok(kvmhub, "rm", enc_vm)
    assert f"secret {secret}" in r.err
    assert secret not in _secrets(host)
    assert not {v for v in _volumes(host) if v.startswith(enc_vm)}
