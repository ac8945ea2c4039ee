"""Ready on a real distribution: Debian 12 built from Debian packages (cloud-init 22.4, OpenSSH,
qemu-guest-agent; kvmhub.tools.distro), two guests booting side by side on the test host's network.

One guest's user-data works: `create --wait` returns when cloud-init is done, and `kvmhub ssh` works right then
(no retry), as user `debian` that create named. The other's runcmd exits 1: `create --wait` fails naming
cloud-init's failing module. `exec` runs through the real qemu-guest-agent.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from kvmhub.testing import TestHost
from kvmhub.tools.distro import DEBIAN_USER
from tests.integration.conftest import LAB_NET, Result, Runner
from tests.integration.test_guest_ssh import in_host_net

pytestmark = pytest.mark.integration

IMAGE = "debian12"
GOOD, BAD = "deb-ok", "deb-fail"


@dataclass
class Created:
    create: Result
    seconds: float
    ssh: Result | None = None  # `kvmhub ssh` run the moment create returned


@pytest.fixture(scope="module")
def debian_image(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    start = time.monotonic()
    r = kvmhub("image", "build-debian", "--name", IMAGE, timeout=1500)
    assert r.code == 0, r.err
    print(f"\nimage build-debian (build or cache, and import): {time.monotonic() - start:.1f} s")
    # debian12, or the nearest Debian this host's osinfo-db knows: either gives the default user debian
    assert kvmhub("image", "show", IMAGE, "--json").json()["os"].startswith("debian")
    yield IMAGE
    kvmhub("image", "rm", IMAGE)


@pytest.fixture(scope="module")
def created(debian_image: str, prepared_host: TestHost, kvmhub: Runner,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Created]]:
    """Both guests, created at once with --wait; the good one is reached with `kvmhub ssh` as create returns."""
    key = tmp_path_factory.mktemp("debian-key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    def create(name: str, *options: str) -> Created:
        start = time.monotonic()
        r = kvmhub("create", name, "--image", debian_image, "--network", LAB_NET, "--memory", "1G",
                   "--ssh-key", f"{key}.pub", *options, "--wait", "--timeout", "420")
        made = Created(r, time.monotonic() - start)
        if r.code == 0:
            made.ssh = in_host_net(prepared_host, "ssh", name, "--", "cloud-init status; id -un")
        return made

    with ThreadPoolExecutor(2) as pool:
        good = pool.submit(create, GOOD)
        bad = pool.submit(create, BAD, "--runcmd", "echo kvmhub-failing-runcmd; exit 1")
        made = {GOOD: good.result(), BAD: bad.result()}
    try:
        yield made
    finally:
        for name in made:
            kvmhub("rm", name)


def test_create_wait_returns_when_cloud_init_is_done_and_ssh_works(created: dict[str, Created],
                                                                   kvmhub: Runner) -> None:
    made = created[GOOD]
    assert made.create.code == 0, made.create.err
    assert f"SSH keys for user {DEBIAN_USER}" in made.create.err
    assert made.ssh is not None and made.ssh.code == 0, made.ssh
    assert made.ssh.out == f"status: done\n{DEBIAN_USER}\n"
    shown = kvmhub("show", GOOD, "--json").json()
    assert (shown["phase"], shown["user"]) == ("ready", DEBIAN_USER)
    print(f"\ncreate --wait -> ready: {made.seconds:.1f} s")


def test_exec_runs_through_the_real_guest_agent(created: dict[str, Created], kvmhub: Runner) -> None:
    r = kvmhub("exec", GOOD, "--", "sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME; echo to-err >&2; exit 3")
    assert (r.code, r.out, r.err) == (3, "bookworm\n", "to-err\n"), r.err
    r = kvmhub("exec", GOOD, "--", "systemctl", "is-active", "qemu-guest-agent", "ssh", "cloud-final")
    assert (r.code, r.out) == (0, "active\nactive\nactive\n"), r.err


def test_a_failing_user_data_fails_create_with_the_failing_module(created: dict[str, Created],
                                                                  kvmhub: Runner) -> None:
    made = created[BAD]
    assert made.create.code == 1, made.create.err
    assert f"cloud-init in VM {BAD} finished with errors" in made.create.err
    assert "scripts_user" in made.create.err or "scripts-user" in made.create.err, made.create.err
    assert kvmhub("show", BAD, "--json").json()["phase"] == "ready"  # finished, with errors: the VM is kept



def test_a_warm_template_of_the_real_distribution(created: dict[str, Created], prepared_host: TestHost,
                                                  kvmhub: Runner) -> None:
    """Last in the module: the template leaves the good guest shut off. A VM restored from it (ifupdown and
    dhclient, OpenSSH, no ping: not the tiny appliance's tools) is ready with its own identity and takes SSH."""
    assert created[GOOD].create.code == 0, created[GOOD].create.err
    probe = "hostname; cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    source = kvmhub("exec", GOOD, "--", "sh", "-c", probe)
    assert source.code == 0, source.err
    source_ip = kvmhub("show", GOOD, "--json").json()["ips"]
    r = kvmhub("template", "create", "debtpl", "--from", GOOD)
    assert r.code == 0, r.err
    try:
        start = time.monotonic()
        r = kvmhub("create", "deb-warm", "--template", "debtpl", "--network", LAB_NET, "--wait", "--timeout", "180")
        seconds = time.monotonic() - start
        try:
            assert r.code == 0, r.err
            shown = kvmhub("show", "deb-warm", "--json").json()
            assert shown["phase"] == "ready" and shown["ips"] and shown["ips"] != source_ip, shown
            ssh = in_host_net(prepared_host, "ssh", "deb-warm", "--", "hostname; id -un")
            assert (ssh.code, ssh.out) == (0, f"deb-warm\n{DEBIAN_USER}\n"), ssh
            mine = kvmhub("exec", "deb-warm", "--", "sh", "-c", probe)
            assert mine.code == 0, mine.err
            name, machine_id, host_key = mine.out.splitlines()
            old_name, old_id, old_key = source.out.splitlines()
            assert (name, old_name) == ("deb-warm", GOOD)
            assert machine_id != old_id and host_key.split()[1] != old_key.split()[1]
            print(f"\nwarm create of the Debian guest -> ready: {seconds:.1f} s "
                  f"(cold: {created[GOOD].seconds:.1f} s)")
        finally:
            kvmhub("rm", "deb-warm")
    finally:
        kvmhub("template", "rm", "debtpl")
