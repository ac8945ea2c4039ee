"""cloud-init seeds seen from inside real tiny guests (whose kernel has no AHCI: the seed is on virtio-blk).

Two guests boot in parallel: one with --ssh-key, --password-file and --runcmd, one with a static address from
--network-config. Bad seed inputs are refused with exit code 2 before anything is created.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Result, Runner
from tests.integration.guest import guest_run
from tests.integration.test_vm_create_failures import leftovers

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55"  # noqa: S105
STATIC_IP = "10.77.0.250"  # kvmhub reserves it on `lab` for the VM, so DHCP never hands it out
NET_CONFIG = f"""version: 2
ethernets:
  eth0:
    addresses: [{STATIC_IP}/24]
    gateway4: 10.77.0.1
    nameservers:
      addresses: [10.77.0.1]
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cloudinit")
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + os.urandom(32)  # the wire form of an ed25519 public key
    (d / "key.pub").write_text(f"ssh-ed25519 {base64.b64encode(blob).decode()} ci@kvmhub\n")
    (d / "net.yaml").write_text(NET_CONFIG)
    (d / "password").write_text(PASSWORD + "\n")
    return d


@pytest.fixture(scope="module")
def guests(prepared_host: TestHost, kvmhub: Runner, files: Path) -> Iterator[tuple[str, str]]:
    """ci1 (key, password, runcmd) and ci2 (static address), created and booted side by side."""
    common = ["--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--wait", "--timeout", "240"]
    runs = {
        "ci1": ["create", "ci1", *common, "--ssh-key", str(files / "key.pub"),
                "--password-file", str(files / "password"), "--runcmd", "echo hi > /root/ran"],
        "ci2": ["create", "ci2", *common, "--network-config", str(files / "net.yaml")],
    }
    try:
        with ThreadPoolExecutor(len(runs)) as pool:
            results: dict[str, Result] = dict(zip(runs, pool.map(lambda argv: kvmhub(*argv), runs.values()),
                                                  strict=True))
        for name, r in results.items():
            assert r.code == 0, f"{name}: {r.err}"
        assert "--password puts" not in results["ci1"].err
        yield "ci1", "ci2"
    finally:
        for name in runs:
            kvmhub("rm", name)


def test_seed_sets_hostname_key_runcmd_and_hashed_password(prepared_host: TestHost, guests: tuple[str, str],
                                                           files: Path) -> None:
    vm = guests[0]
    assert guest_run(prepared_host, vm, ["hostname"]).out.strip() == vm
    key = (files / "key.pub").read_text().strip()
    assert key in guest_run(prepared_host, vm, ["cat", "/root/.ssh/authorized_keys"]).out.splitlines()
    assert guest_run(prepared_host, vm, ["cat", "/root/ran"]).out == "hi\n"

    shadow = guest_run(prepared_host, vm, ["cat", "/etc/shadow"]).out
    root = next(line for line in shadow.splitlines() if line.startswith("root:"))
    stored = root.split(":")[1]
    assert stored.startswith("$6$") and PASSWORD not in shadow
    # busybox's crypt (the one login uses) turns the password and the stored salt into the stored hash
    salt = stored[len("$6$"):].rsplit("$", 1)[0]
    assert guest_run(prepared_host, vm, ["mkpasswd", "-m", "sha512", PASSWORD, salt], timeout=120).out.strip() \
        == stored
    assert guest_run(prepared_host, vm, ["mkpasswd", "-m", "sha512", "wrong", salt], timeout=120).out.strip() \
        != stored
    seed = guest_run(prepared_host, vm, ["cat", "/run/seed/user-data"]).out
    assert stored in seed and PASSWORD not in seed


def test_network_config_gives_the_static_address(prepared_host: TestHost, kvmhub: Runner,
                                                 guests: tuple[str, str]) -> None:
    first, second = guests
    assert f"inet {STATIC_IP}/24" in guest_run(prepared_host, second, ["ip", "-4", "addr", "show", "eth0"]).out
    r = kvmhub("ip", second, "--json")
    assert r.code == 0, r.err
    assert STATIC_IP in [a["ip"] for a in r.json()]
    assert f"ip='{STATIC_IP}'" in prepared_host.virsh("net-dumpxml", LAB_NET).stdout  # reserved for it
    ping = guest_run(prepared_host, first, ["ping", "-c", "1", "-W", "5", STATIC_IP], timeout=30)
    assert ping.code == 0, ping.out + ping.err


def test_a_static_address_already_reserved_is_refused(prepared_host: TestHost, kvmhub: Runner,
                                                      guests: tuple[str, str], files: Path) -> None:
    r = kvmhub("create", "ci3", "--image", "tiny", "--network", LAB_NET, "--no-start",
               "--network-config", str(files / "net.yaml"))
    assert r.code == 4, r.err
    assert STATIC_IP in r.err and guests[1] in r.err
    assert leftovers(prepared_host, "ci3") == []


@pytest.mark.parametrize(
    ("name", "write", "option", "words"),
    [
        pytest.param("ud-yaml", "#cloud-config\nruncmd:\n  - echo ok\n  - [unclosed\n", "--user-data", "line 5",
                     id="user-data-yaml"),
        pytest.param("ud-script", "#!/bin/sh\necho hi\n", "--user-data", "cannot be merged", id="script-and-runcmd"),
        pytest.param("nc-cidr", "version: 2\nethernets:\n  eth0:\n    addresses: [10.77.0.300/24]\n",
                     "--network-config", "line 4: ethernets.eth0.addresses[0]", id="network-config-cidr"),
        pytest.param("nc-version", "ethernets:\n  eth0:\n    dhcp4: true\n", "--network-config", "has no version",
                     id="network-config-version"),
        pytest.param("vd-yaml", "#cloud-config\npackages: [a\n", "--vendor-data", "not valid YAML at line",
                     id="vendor-data-yaml"),
        pytest.param("pw-empty", "", "--password-file", "holds no password", id="password-file-empty"),
    ],
)
def test_bad_seed_input_is_refused_before_anything_is_made(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path,
                                                            name: str, write: str, option: str, words: str) -> None:
    doc = tmp_path / "doc"
    doc.write_text(write)
    r = kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, option, str(doc), "--runcmd", "true")
    assert r.code == 2, r.err
    assert words in r.err
    assert leftovers(prepared_host, name) == []
    assert f"'{name}'" not in prepared_host.virsh("net-dumpxml", LAB_NET).stdout
