"""SSH into guests: kvmhub's own key pair, the user the keys went to, a known_hosts file per VM, ssh's command.

The key pair lives under the state directory of whoever runs the CLI (``ssh/id_ed25519``), made with
``ssh-keygen`` on first use; `create` adds its public half to every seed whose user-data kvmhub writes or merges,
beside the user's ``--ssh-key`` keys. Host keys are learned on the first connection (ssh's
``StrictHostKeyChecking=accept-new``) into a known_hosts file per VM UUID, so a VM made again under the same
name is a new host and a changed key of the same VM is refused by ssh.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kvmhub.errors import Conflict, HostProblem, InvalidInput, NotFound
from kvmhub.models import PHASE_ORDER, Phase, VMInfo
from kvmhub.ops.paths import state_dir

KEY_FILE = "id_ed25519"
SSH_PORT = 22
TINY_USER = "root"  # the tiny appliance's only user (tools/tiny/files/passwd)
# libosinfo short-id prefixes -> the default user of that distribution's cloud images
_CLOUD_USERS = (
    ("debian", "debian"), ("ubuntu", "ubuntu"), ("fedora", "fedora"), ("centos-stream", "cloud-user"),
    ("centos", "centos"), ("rhel", "cloud-user"), ("almalinux", "almalinux"), ("rocky", "rocky"),
    ("alpinelinux", "alpine"), ("archlinux", "arch"), ("opensuse", "opensuse"), ("sle", "sles"),
    ("freebsd", "freebsd"),
)
_TINY_IMAGE = re.compile(r"^tiny(-[0-9a-f]+)?\.qcow2$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def default_user(os_id: str | None, image_source: str | None) -> str | None:
    """The user a cloud image gives ``ssh_authorized_keys`` to: from the OS variant, or the tiny appliance's
    root; None when kvmhub cannot tell."""
    if image_source and _TINY_IMAGE.match(os.path.basename(image_source)):
        return TINY_USER
    for prefix, user in _CLOUD_USERS:
        if os_id and os_id.startswith(prefix):
            return user
    return None


def check_user(user: str) -> str:
    if not _USER.match(user):
        raise InvalidInput(f"{{opt:user}} {user!r} is not a user name", hint="a name such as debian or root")
    return user


def key_dir() -> Path:
    return state_dir() / "ssh"


def private_key() -> Path:
    """kvmhub's private key (it may not exist yet: see :func:`public_key`)."""
    return key_dir() / KEY_FILE


def public_key() -> str:
    """kvmhub's public key, the pair made with ssh-keygen when there is none yet.

    Raises HostProblem when ssh-keygen is missing or fails.
    """
    key = private_key()
    pub = key.with_name(KEY_FILE + ".pub")
    if not (key.exists() and pub.exists()):
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # two commands started at once on a new host (two creates) make one key: the second waits, then reads it
        lock = os.open(key.parent / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (key.exists() and pub.exists()):
                _make_key(key, pub)
        finally:
            os.close(lock)
    return pub.read_text().strip()


def _make_key(key: Path, pub: Path) -> None:
    for stale in (key, pub):
        stale.unlink(missing_ok=True)
    try:
        done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvmhub", "-f", str(key)],
                              capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise HostProblem("cannot make kvmhub's SSH key: ssh-keygen is not installed",
                          hint="install OpenSSH's client (Debian: `apt install openssh-client`)") from None
    if done.returncode != 0:
        raise HostProblem("cannot make kvmhub's SSH key", original=done.stderr.strip())


def known_hosts(uuid: str) -> Path:
    """The known_hosts file of the VM with this UUID."""
    return key_dir() / "known_hosts" / uuid


@dataclass(frozen=True)
class Target:
    """Where `kvmhub ssh` connects: the guest's address and user, and the VM's UUID (its known_hosts)."""

    ip: str
    user: str | None
    uuid: str
    phase: Phase


def target(vm: VMInfo, user: str | None) -> Target:
    """The address and user to reach ``vm`` (as `show` reports it) at; refuses, naming its phase, when it has no
    address yet. ``user`` (a --user) wins over the user kvmhub recorded at create."""
    if PHASE_ORDER.index(vm.phase) < PHASE_ORDER.index(Phase.BOOTED) and not vm.ips:
        hint = f"start it: {{cmd:start {vm.name}}}" if vm.phase is Phase.DEFINED else \
            f"wait for it: {{cmd:ip {vm.name} --wait}}"
        raise Conflict(f"VM {vm.name} has no address yet: it is {vm.phase.value}", hint=hint, code="vm.wrong_state")
    ipv4 = [ip for ip in vm.ips if ":" not in ip]
    if not ipv4:
        raise Conflict(f"VM {vm.name} has no IPv4 address yet: it is {vm.phase.value}",
                       cause="no DHCP lease, guest agent or serial log reports one",
                       hint=f"wait for one: {{cmd:ip {vm.name} --wait}}", code="vm.wrong_state")
    return Target(ipv4[0], check_user(user) if user else vm.user, vm.uuid, vm.phase)


def check_sshd(name: str, address: Target, timeout: float = 5.0) -> None:
    """Refuse, naming the VM's phase, when no SSH server greets on the guest's SSH port."""
    try:
        with socket.create_connection((address.ip, SSH_PORT), timeout=timeout) as conn:
            conn.settimeout(timeout)
            greeting = conn.recv(256)
        cause = f"{address.ip}:{SSH_PORT} answered {greeting[:40]!r}, not an SSH greeting"
        if greeting.startswith(b"SSH-"):
            return
    except OSError as exc:
        cause = f"{address.ip}:{SSH_PORT}: {exc.strerror or exc}"
    raise HostProblem(f"no SSH server answers on VM {name} (it is {address.phase.value})", cause=cause,
                      hint=f"wait until it is ready ({{cmd:show {name}}}), or use its console: {{cmd:console {name}}}")


def command(address: Target, key: Path | None, remote: list[str]) -> list[str]:
    """The ssh command line: kvmhub's key (or ``key``) only, the VM's own known_hosts, then ``remote``."""
    identity = key if key is not None else private_key()
    if not identity.exists():
        raise NotFound(f"no SSH key at {identity}",
                       hint="give one with {opt:identity}, or make the VM with kvmhub's key ({cmd:create})")
    hosts = known_hosts(address.uuid)
    hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = ["ssh", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={hosts}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10", "-o", "BatchMode=yes"
            if remote else "BatchMode=no"]
    destination = f"{address.user}@{address.ip}" if address.user else address.ip
    return [*argv, "--", destination, *remote]
