"""Editing a guest's file systems offline through libguestfs (Debian's ``python3-guestfs``).

A :class:`GuestEditor` launches libguestfs's appliance on one disk file, finds the guest's root (its operating
system when libguestfs recognises one, else the one file system holding ``/etc``, else the boot disk of kvmhub's
tiny appliance) and applies a :class:`~kvmhub.models.customize.CustomizeRequest`. It edits whatever file it is
given: callers hand it a throw-away overlay, never the disk itself.

The tiny appliance runs from an initramfs; its disk is one FAT file system holding the kernel. Its edits go to
``/overlay`` on that disk, which the appliance copies over ``/`` early at boot.
"""

from __future__ import annotations

import importlib.util
import posixpath
import subprocess
import time
from collections.abc import Callable
from typing import Any

from kvmhub.errors import HostProblem, InvalidInput, OperationFailed
from kvmhub.models.customize import CustomizeRequest, GuestFile

TINY_STAMP = "/kvmhub-tiny"
TINY_OVERLAY = "/overlay"
FIRSTBOOT_DIR = "/usr/local/lib/kvmhub-firstboot"
FIRSTBOOT_RUNNER = "/usr/local/sbin/kvmhub-firstboot"
FIRSTBOOT_UNIT = "/etc/systemd/system/kvmhub-firstboot.service"
HOSTNAME_CFG = "/etc/cloud/cloud.cfg.d/90-kvmhub-hostname.cfg"

# what --sysprep removes (globs) and empties (files whose absence would break the guest)
SYSPREP_REMOVE = (
    "/etc/ssh/ssh_host_*", "/etc/dropbear/dropbear_*_host_key", "/var/lib/dbus/machine-id",
    "/var/lib/cloud/*", "/var/lib/dhcp/*", "/var/lib/dhclient/*", "/var/lib/NetworkManager/*.lease",
    "/var/lib/systemd/random-seed", "/var/log/journal/*", "/var/log/*.log", "/var/log/*.gz", "/var/log/*.[0-9]",
    "/var/log/*/*.log", "/var/log/*/*.gz", "/root/.bash_history", "/root/.ash_history", "/root/.lesshst",
    "/home/*/.bash_history", "/home/*/.ash_history", "/tmp/*", "/var/tmp/*",
)  # fmt: skip
SYSPREP_EMPTY = ("/etc/machine-id", "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/var/log/syslog",
                 "/var/log/messages")

FIRSTBOOT_SCRIPT = """#!/bin/sh
# Runs each script of {dir} once, in name order, then moves it to {dir}/done (written by kvmhub).
mkdir -p {dir}/done
for s in {dir}/*; do
\t[ -f "$s" ] || continue
\techo "kvmhub-firstboot: running $s"
\tsh "$s" >>/var/log/kvmhub-firstboot.log 2>&1
\techo "kvmhub-firstboot: $s exited $?"
\tmv "$s" {dir}/done/
done
"""
FIRSTBOOT_SERVICE = f"""[Unit]
Description=kvmhub first-boot scripts
After=network.target
ConditionDirectoryNotEmpty=|{FIRSTBOOT_DIR}

[Service]
Type=oneshot
ExecStart={FIRSTBOOT_RUNNER}
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


def unavailable() -> str | None:
    """Why libguestfs cannot be used from this Python (None when it can be imported)."""
    if importlib.util.find_spec("guestfs") is None:
        return ("the Python module guestfs is missing: install libguestfs-tools and python3-guestfs and run "
                "scripts/setup.sh (it links Debian's bindings into kvmhub's virtualenv)")
    return None


def password_hash(password: str) -> str:
    """A SHA-512 crypt hash of ``password``; the password reaches openssl on its standard input, never argv."""
    try:
        proc = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True,
                              text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise HostProblem("openssl is not installed: kvmhub hashes passwords with it", hint="apt-get install openssl",
                          original=str(exc)) from exc
    if proc.returncode != 0 or not proc.stdout.startswith("$6$"):
        raise OperationFailed("could not hash the password", original=proc.stderr.strip() or None)
    return proc.stdout.strip()


def with_field(table: str, user: str, index: int, value: str) -> str | None:
    """``table`` (/etc/passwd or /etc/shadow text) with field ``index`` of ``user``'s line set; None without it."""
    lines = table.splitlines(keepends=True)
    for i, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if fields[0] == user and len(fields) > index:
            fields[index] = value
            lines[i] = ":".join(fields) + ("\n" if line.endswith("\n") else "")
            return "".join(lines)
    return None


class GuestEditor:
    """libguestfs on one disk file; use as a context manager (closes the appliance however it ends)."""

    def __init__(self, path: str, fmt: str, *, tcg: bool, label: str, say: Callable[[str], None]) -> None:
        if (why := unavailable()) is not None:
            raise HostProblem(f"cannot edit {label}: libguestfs is unavailable", cause=why,
                              hint="run scripts/setup.sh as root on the kvmhub host")
        self.label = label
        self.say = say
        self.root = ""  # prefix of every guest path: /overlay on the tiny appliance
        self.tiny = False
        self.found = ""
        self.launch_seconds = 0.0
        # loaded here, not with this module: libguestfs costs the server ~12 MiB it needs only while editing
        import guestfs

        self.g: Any = guestfs.GuestFS(python_return_dict=True)
        if tcg:  # KVM unusable here (the accelerator probe said so): QEMU would abort under it
            self.g.set_backend_settings(["force_tcg"])
        self.g.set_network(False)
        self.g.add_drive_opts(path, format=fmt, readonly=False)

    def __enter__(self) -> GuestEditor:
        start = time.monotonic()
        try:
            try:
                self.g.launch()
            except RuntimeError as exc:
                raise HostProblem(f"libguestfs could not start its appliance to edit {self.label}",
                                  cause="libguestfs-test-tool shows the details", hint="run libguestfs-test-tool",
                                  original=str(exc)) from exc
            self.launch_seconds = time.monotonic() - start
            self._mount_root()
        except BaseException:  # Ctrl-C included: the appliance is never left running
            self.g.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.g.shutdown()  # flushes every write; an error here fails the edit
        finally:
            self.g.close()

    # -- finding the root -----------------------------------------------------------------------------

    def _mount_root(self) -> None:
        g = self.g
        roots: list[str] = list(g.inspect_os())
        if roots:
            root = roots[0]
            mounts: dict[str, str] = g.inspect_get_mountpoints(root)
            for mp in sorted(mounts, key=len):
                g.mount(mounts[mp], mp)
            product = g.inspect_get_product_name(root)
            self.found = product if product and product != "unknown" else g.inspect_get_distro(root)
            return
        filesystems: dict[str, str] = g.list_filesystems()
        usable = [(dev, fs) for dev, fs in sorted(filesystems.items()) if fs not in ("swap", "unknown", "")]
        for dev, fs in usable:
            try:
                g.mount(dev, "/")
            except RuntimeError:
                continue
            if g.is_dir("/etc"):
                self.found = f"no known operating system; the root is {dev} ({fs}), the file system with /etc"
                return
            if g.is_file(TINY_STAMP):
                self.tiny, self.root = True, TINY_OVERLAY
                self.found = f"kvmhub's tiny appliance ({dev}, {fs}): edits go to {TINY_OVERLAY}, applied at boot"
                return
            g.umount_all()
        seen = ", ".join(f"{dev} ({fs})" for dev, fs in sorted(filesystems.items())) or "no file system"
        raise InvalidInput(f"{self.label} holds no operating system kvmhub can edit",
                           cause=f"libguestfs recognised no OS, and no file system has /etc; found: {seen}",
                           hint="check it is the right disk (`kvmhub disk ls VM`)")

    # -- helpers --------------------------------------------------------------------------------------

    def _p(self, path: str) -> str:
        return self.root + posixpath.normpath(path) if self.root else posixpath.normpath(path)

    def _read(self, path: str) -> str | None:
        p = self._p(path)
        if not self.g.is_file(p, followsymlinks=True):
            return None
        return bytes(self.g.read_file(p)).decode(errors="surrogateescape")

    def _write(self, path: str, text: str | bytes, mode: int | None = None) -> None:
        p = self._p(path)
        self.g.mkdir_p(posixpath.dirname(p))
        self.g.write(p, text.encode(errors="surrogateescape") if isinstance(text, str) else text)
        if mode is not None:
            self.g.chmod(mode, p)

    def _account(self, user: str) -> tuple[int, int, str]:
        """uid, gid and home of ``user`` from the guest's /etc/passwd (root alone on the tiny appliance)."""
        table = self._read("/etc/passwd") or ("root:x:0:0:root:/root:/bin/sh\n" if self.tiny else "")
        for line in table.splitlines():
            fields = line.split(":")
            if fields[0] == user and len(fields) >= 6:
                return int(fields[2]), int(fields[3]), fields[5] or "/"
        raise InvalidInput(f"{self.label} has no user {user!r}", cause="it is not in the guest's /etc/passwd",
                           hint="name a user the image has (root always exists)")

    # -- the edits ------------------------------------------------------------------------------------

    def apply(self, req: CustomizeRequest) -> list[str]:
        """Make every edit of ``req`` in the documented order; the changes made, one line each."""
        if self.tiny and (req.run or req.firstboot):
            raise InvalidInput(f"{self.label} is kvmhub's tiny appliance: {{opt:run}} and {{opt:firstboot}} "
                               "need a guest with a shell on its disk",
                               cause="its userland lives in an initramfs; its disk holds only a kernel and files")
        changes: list[str] = []
        if req.sysprep:
            changes.append(self.sysprep())
        if req.hostname:
            self.set_hostname(req.hostname)
            changes.append(f"hostname set to {req.hostname}")
        for pw in req.passwords:
            self.set_password(pw.user, pw.password)
            changes.append(f"password of {pw.user} set")
        for key in req.ssh_keys:
            self.add_ssh_key(key.user, key.key.text, key.key.name)
            changes.append(f"SSH key {key.key.name} added for {key.user}")
        for f in req.files:
            self.write_file(f)
            changes.append(f"{f.path} written ({len(f.text.encode())} bytes)")
        for cmd in req.run:
            self.run(cmd)
            changes.append(f"ran {cmd!r}")
        for script in req.firstboot:
            where = self.add_firstboot(script.name, script.text)
            changes.append(f"first-boot script {script.name} installed as {where}")
        return changes

    def sysprep(self) -> str:
        """Reset what makes a disk one machine's: machine-id, SSH host keys, logs, cloud-init, leases, history."""
        g, gone = self.g, 0
        for pattern in SYSPREP_REMOVE:
            for path in g.glob_expand(self._p(pattern)):
                g.rm_rf(path)
                gone += 1
        emptied = 0
        for path in SYSPREP_EMPTY:
            if g.is_file(self._p(path)):
                g.truncate(self._p(path))
                emptied += 1
        if self.tiny:  # its /etc lives in the initramfs: an empty machine-id in the overlay resets it at boot
            self._write("/etc/machine-id", "")
        return f"sysprep: {gone} files removed, {emptied} emptied (machine-id, host keys, logs, leases, history)"

    def set_hostname(self, name: str) -> None:
        """/etc/hostname, the 127.0.1.1 line of /etc/hosts, and cloud-init told to keep it."""
        short = name.split(".")[0]
        self._write("/etc/hostname", short + "\n")
        hosts = self._read("/etc/hosts") or "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
        kept = [line for line in hosts.splitlines() if not line.startswith("127.0.1.1")]
        mine = f"127.0.1.1\t{name} {short}" if name != short else f"127.0.1.1\t{short}"
        self._write("/etc/hosts", "\n".join([*kept, mine]) + "\n")
        if self.tiny or self.g.is_dir(self._p("/etc/cloud")):
            self._write(HOSTNAME_CFG, "# written by kvmhub image customize / disk edit\npreserve_hostname: true\n")

    def set_password(self, user: str, password: str) -> None:
        """``user``'s password, as a hash in /etc/shadow (or in /etc/passwd where the guest has no shadow)."""
        self._account(user)
        hashed = password_hash(password)
        shadow = self._read("/etc/shadow")
        if shadow is None and self.tiny:
            days = int(time.time() // 86400)
            self._write("/etc/shadow", f"root:{hashed}:{days}:0:99999:7:::\n", 0o600)
            return
        if shadow is not None:
            updated = with_field(shadow, user, 1, hashed)
            if updated is None:
                raise InvalidInput(f"{self.label} has no /etc/shadow entry for {user!r}",
                                   hint="the user exists in /etc/passwd only; add it with {opt:run} first")
            self._write("/etc/shadow", updated)
            return
        passwd = self._read("/etc/passwd") or ""
        self._write("/etc/passwd", with_field(passwd, user, 1, hashed) or passwd)

    def add_ssh_key(self, user: str, key: str, name: str) -> None:
        """Append ``key`` to ``user``'s authorized_keys (made with the modes sshd insists on)."""
        if not key.strip():
            raise InvalidInput(f"the SSH key {name} is empty")
        uid, gid, home = self._account(user)
        ssh_dir = posixpath.join(home, ".ssh")
        keys = posixpath.join(ssh_dir, "authorized_keys")
        old = self._read(keys) or ""
        if old and not old.endswith("\n"):
            old += "\n"
        self._write(keys, old + key.strip() + "\n", 0o600)
        self.g.chmod(0o700, self._p(ssh_dir))
        if not self.tiny:  # FAT has no owners
            self.g.chown(uid, gid, self._p(ssh_dir))
            self.g.chown(uid, gid, self._p(keys))

    def write_file(self, f: GuestFile) -> None:
        """Write ``f`` (its parent directories made as needed)."""
        p = self._p(f.path)
        if self.g.is_dir(p):
            raise InvalidInput(f"cannot write {f.path} in {self.label}: it is a directory")
        self._write(f.path, f.text, f.mode)

    def run(self, cmd: str) -> None:
        """Run ``cmd`` with the guest's /bin/sh, its root as /, no network; OperationFailed when it fails."""
        if not self.g.is_file("/bin/sh", followsymlinks=True):
            raise InvalidInput(f"cannot run {cmd!r} in {self.label}: it has no /bin/sh")
        self.say(f"running {cmd!r} inside {self.label}")
        try:
            self.g.sh(cmd)
        except RuntimeError as exc:
            raise OperationFailed(f"{cmd!r} failed inside {self.label}; nothing was changed",
                                  cause="the command exited non-zero (it runs without network)",
                                  original=str(exc)) from exc

    def add_firstboot(self, name: str, text: str) -> str:
        """Install a script run once at the next boot (systemd unit, else /etc/rc.local); where it went."""
        g = self.g
        taken = g.glob_expand(f"{FIRSTBOOT_DIR}/*") if g.is_dir(FIRSTBOOT_DIR) else []
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in posixpath.basename(name))[:60] or "script"
        path = f"{FIRSTBOOT_DIR}/{len(taken) + 1:02d}-{base}"
        self._write(path, text, 0o755)
        self._write(FIRSTBOOT_RUNNER, FIRSTBOOT_SCRIPT.format(dir=FIRSTBOOT_DIR), 0o755)
        if g.is_dir("/etc/systemd/system"):
            self._write(FIRSTBOOT_UNIT, FIRSTBOOT_SERVICE)
            g.mkdir_p("/etc/systemd/system/multi-user.target.wants")
            g.ln_sf(FIRSTBOOT_UNIT, "/etc/systemd/system/multi-user.target.wants/kvmhub-firstboot.service")
            return path
        rc = self._read("/etc/rc.local") or "#!/bin/sh\n"
        if FIRSTBOOT_RUNNER not in rc:
            lines = rc.rstrip("\n").splitlines()
            if lines and lines[-1].strip() == "exit 0":
                lines.pop()
            rc = "\n".join([*lines, FIRSTBOOT_RUNNER, "exit 0"]) + "\n"
        self._write("/etc/rc.local", rc, 0o755)
        return path
