"""The tiny appliance booted with raw QEMU (TCG): boot markers, NoCloud seed, DHCP, agent, ACPI.

Every QEMU runs under ``timeout`` in its own process group, and the fixtures kill the group, so no
guest outlives the test run even when a test fails or pytest is interrupted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmhub.tools.seed import write_nocloud_seed
from kvmhub.tools.tiny import build_probe_initramfs, build_tiny_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 missing"),
]

CACHE_DIR = Path(os.environ.get("KVMHUB_CACHE_DIR", "/var/cache/kvmhub"))
BOOT_TIMEOUT = 180.0
QEMU_LIFETIME = "600"
HOSTNAME = "tiny-test-1"
RUNCMD_MARKER = "RUNCMD-SAYS-HELLO"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvmhubtestkeyonlyforthetinyimagetestxx test@kvmhub"
USER_DATA = f"""#cloud-config
hostname: {HOSTNAME}
ssh_authorized_keys:
  - {SSH_KEY}
write_files:
  - path: /etc/kvmhub-test
    content: |
      written by write_files
runcmd:
  - echo {RUNCMD_MARKER}
  - cat /etc/kvmhub-test
  - echo persisted > /mnt/disk/runcmd.txt
"""


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    return build_tiny_image(CACHE_DIR)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Unix socket paths must stay under 108 bytes, so not pytest's long tmp_path.
    path = Path(tempfile.mkdtemp(prefix="kvmhub-tiny-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Guest:
    """A QEMU process with its serial log, QMP socket and guest agent socket."""

    def __init__(self, workdir: Path, argv: list[str]) -> None:
        self.serial = workdir / "serial.log"
        self.qmp_path = workdir / "qmp.sock"
        self.ga_path = workdir / "ga.sock"
        self.started = time.monotonic()
        self._stderr = (workdir / "qemu.stderr").open("wb")
        self.proc = subprocess.Popen(
            ["timeout", "--kill-after=5", QEMU_LIFETIME, *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        try:
            return self.serial.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float = BOOT_TIMEOUT) -> re.Match[str]:
        """Wait until a serial line matches ``pattern`` (anchored at the line start)."""
        rx = re.compile(rf"^{pattern}", re.MULTILINE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.log().replace("\r", ""))
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} on the serial console:\n{self.log()[-3000:]}")

    def qmp(self, command: str, timeout: float = 10) -> Any:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.qmp_path))
            stream = sock.makefile("rw")
            json.loads(stream.readline())
            for cmd in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": cmd}) + "\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "event" not in reply:
                        break
            return reply

    def agent(self, request: dict[str, Any], timeout: float = 60) -> Any:
        """Send one request to qemu-ga, first syncing the channel (the agent may start late)."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.ga_path))
            sync_id = 1000
            buf = b""
            synced = False
            while not synced:
                if time.monotonic() > deadline:
                    raise AssertionError("the guest agent never answered guest-sync")
                sync_id += 1
                sock.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": sync_id}}).encode())
                sock.settimeout(2)
                with contextlib.suppress(TimeoutError):
                    while not synced:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise AssertionError("the agent socket closed")
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        synced = any(_is_reply(line, sync_id) for line in lines)
            sock.settimeout(max(1.0, deadline - time.monotonic()))
            sock.sendall(json.dumps(request).encode() + b"\n")
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError("the agent socket closed")
                buf += chunk
            return json.loads(buf.split(b"\n", 1)[0])

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._stderr.close()


def _is_reply(line: bytes, sync_id: int) -> bool:
    try:
        return bool(json.loads(line.strip(b"\xff")) == {"return": sync_id})
    except ValueError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _boot(workdir: Path, image: Path, *, user_data: str = USER_DATA, ssh_port: int | None = None) -> Guest:
    overlay = workdir / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2", str(overlay)],
        check=True,
        timeout=30,
    )
    seed = write_nocloud_seed(
        workdir / "seed.iso", f"instance-id: iid-{workdir.name}\nlocal-hostname: from-meta-data\n", user_data
    )
    # restrict=on keeps the guest off every network; hostfwd only lets loopback reach its port 22.
    hostfwd = f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22" if ssh_port else ""
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config",
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{workdir / 'serial.log'}",
        "-qmp", f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
        "-drive", f"file={overlay},format=qcow2,if=virtio",
        "-drive", f"file={seed},format=raw,if=virtio,readonly=on",
        "-netdev", f"user,id=n0,restrict=on{hostfwd}", "-device", "virtio-net-pci,netdev=n0",
        "-chardev", f"socket,id=ga0,path={workdir / 'ga.sock'},server=on,wait=off",
        "-device", "virtio-serial", "-device", "virtserialport,chardev=ga0,name=org.qemu.guest_agent.0",
    ]  # fmt: skip
    return Guest(workdir, argv)


@pytest.fixture
def guest(workdir: Path, tiny_image: Path) -> Iterator[Guest]:
    g = _boot(workdir, tiny_image)
    try:
        yield g
    finally:
        g.kill()


def test_image_is_small_qcow2(tiny_image: Path) -> None:
    assert tiny_image.stat().st_size < 60 * 1024 * 1024
    info = subprocess.run(
        ["qemu-img", "info", "-f", "qcow2", "--output=json", str(tiny_image)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert json.loads(info.stdout)["format"] == "qcow2"
    assert (tiny_image.parent / "tiny.qcow2").resolve() == tiny_image.resolve()


def test_second_build_reuses_the_cache(tiny_image: Path) -> None:
    phases: list[str] = []
    again = build_tiny_image(CACHE_DIR, progress=phases.append)
    assert again == tiny_image
    assert "disk image" not in phases


def test_boot_seed_network_runcmd_and_agent(guest: Guest) -> None:
    guest.wait_for("KVMHUB-BOOTED")
    assert guest.wait_for(r"KVMHUB-HOSTNAME (\S+)").group(1) == HOSTNAME
    assert guest.wait_for(r"KVMHUB-NETWORK (\S+) (\S+)").groups() == ("eth0", "10.0.2.15")
    guest.wait_for("KVMHUB-READY")
    ready_after = time.monotonic() - guest.started
    log = guest.log().replace("\r", "")
    assert re.search(rf"^{RUNCMD_MARKER}$", log, re.MULTILINE)
    assert re.search(r"^written by write_files$", log, re.MULTILINE)
    assert log.index(RUNCMD_MARKER) < log.index("KVMHUB-READY")
    print(f"boot to KVMHUB-READY under TCG: {ready_after:.1f} s")

    assert guest.agent({"execute": "guest-ping"}) == {"return": {}}
    ifaces = guest.agent({"execute": "guest-network-get-interfaces"})["return"]
    addrs = {(i["name"], a["ip-address"]) for i in ifaces for a in i.get("ip-addresses", [])}
    assert ("eth0", "10.0.2.15") in addrs
    started = guest.agent(
        {
            "execute": "guest-exec",
            "arguments": {
                "path": "/bin/sh",
                "arg": ["-c", "hostname; cat /root/.ssh/authorized_keys"],
                "capture-output": True,
            },
        }
    )
    pid = started["return"]["pid"]
    deadline = time.monotonic() + 30
    while True:
        status = guest.agent({"execute": "guest-exec-status", "arguments": {"pid": pid}})["return"]
        if status["exited"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = base64.b64decode(status.get("out-data", "")).decode()
    assert status["exitcode"] == 0
    assert out.splitlines() == [HOSTNAME, SSH_KEY]


def test_acpi_power_button_powers_off_and_disk_writes_persist(guest: Guest, workdir: Path) -> None:
    guest.wait_for("KVMHUB-READY")
    assert guest.qmp("system_powerdown") == {"return": {}}
    guest.wait_for("KVMHUB-POWEROFF", timeout=30)
    assert guest.wait_exit(timeout=60) == 0
    raw = workdir / "disk.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(workdir / "disk.qcow2"), str(raw)],
        check=True,
        timeout=60,
    )
    typed = subprocess.run(
        ["mtype", "-i", str(raw), "::runcmd.txt"], check=True, capture_output=True, text=True, timeout=30
    )
    assert typed.stdout.strip() == "persisted"


def test_agent_shutdown_prints_poweroff(guest: Guest) -> None:
    guest.wait_for("KVMHUB-BOOTED")
    assert guest.agent({"execute": "guest-ping"}) == {"return": {}}
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(guest.ga_path))
        sock.sendall(b'{"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}\n')
    guest.wait_for("KVMHUB-POWEROFF", timeout=60)
    assert guest.wait_exit(timeout=60) == 0


def test_boot_without_seed_is_still_ready(workdir: Path, tiny_image: Path) -> None:
    overlay = workdir / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(tiny_image), "-F", "qcow2", str(overlay)],
        check=True,
        timeout=30,
    )
    g = Guest(
        workdir,
        [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{workdir / 'serial.log'}",
            "-drive", f"file={overlay},format=qcow2,if=virtio",
        ],
    )  # fmt: skip
    try:
        assert g.wait_for(r"KVMHUB-HOSTNAME (\S+)").group(1) == "tiny"
        g.wait_for("KVMHUB-READY")
        assert "KVMHUB-NETWORK" not in g.log()
    finally:
        g.kill()


@pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None, reason="no ssh client")
def test_ssh_login_with_a_users_key_from_the_seed(workdir: Path, tiny_image: Path) -> None:
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    pub = key.with_suffix(".pub").read_text().strip()
    user_data = f"#cloud-config\nusers:\n  - default\n  - name: root\n    ssh_authorized_keys:\n      - {pub}\n"
    port = _free_port()
    g = _boot(workdir, tiny_image, user_data=user_data, ssh_port=port)
    try:
        g.wait_for("KVMHUB-READY")
        done = subprocess.run(
            [
                "ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "root@127.0.0.1", "hostname",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "from-meta-data"
    finally:
        g.kill()


def test_probe_initramfs_prints_ok_and_powers_off(workdir: Path) -> None:
    kernel, initramfs = build_probe_initramfs(workdir / "probe", cache_dir=CACHE_DIR)
    g = Guest(
        workdir,
        [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-nodefaults", "-no-user-config",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{workdir / 'serial.log'}",
            "-kernel", str(kernel), "-initrd", str(initramfs), "-append", "console=ttyS0 quiet",
        ],
    )  # fmt: skip
    try:
        g.wait_for("KVMHUB-PROBE-OK", timeout=120)
        assert g.wait_exit(timeout=60) == 0
    finally:
        g.kill()
