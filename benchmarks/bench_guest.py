"""Guest integration: `kvmhub exec` vs ssh, `kvmhub cp` vs scp, `image customize` vs virt-customize, and
virtiofs vs the guest's own virtio disk.

One tiny guest (512 MiB: files copied in land in its RAM-backed /tmp) runs on a private test host with a
virtiofs share and a second virtio disk. Each round, interleaved:

- ``kvmhub exec VM -- true`` (the guest agent) then ``ssh root@IP true`` with the key kvmhub injected at create
  (``kvmhub-exec`` / ``ssh``); both run in the test host's network namespace, where the guest's network is.
- ``kvmhub cp FILE VM:/tmp/`` then ``scp -O FILE root@IP:/tmp/`` of the same random file (``kvmhub-cp`` /
  ``scp``; the tiny guest has no scp of its own: the host's, which needs only libc, is copied in first, untimed).
- ``kvmhub image customize`` then ``virt-customize`` doing the same four edits (hostname, root's SSH key, a
  file, root's password) on copies of one small ext4 Debian-like image (``kvmhub-customize`` /
  ``virt-customize``): each launches libguestfs's appliance, under TCG here (``force_tcg``).
- a sequential read in the guest (``dd``, its page cache dropped first) of a file of the share then of as many
  bytes of the second virtio disk (``virtiofs-read`` / ``disk-read``: time inside the guest, no target).

Run from the repo root: ``.venv/bin/python benchmarks/bench_guest.py [--runs N] [--json] [--smoke]``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `benchmarks` imports

from benchmarks._common import (
    BYTECODE_NOTE,
    KVMHUB,
    CommandFailed,
    Samples,
    accelerator_name,
    kvmhub,
    kvmhub_env,
    log,
    parse_args,
    private_host,
    report,
    require_tools,
    run,
    script,
)
from kvmhub.services.vm.ssh import private_key
from kvmhub.testing import TestHost
from tests.integration.guest import guest_run

VM = "bguest"
NET, SUBNET = "bguest", "10.79.0.0/24"
IMAGE_NAME = "tiny"
CUSTOM_IMAGE = "bench-custom"
MEMORY = "512M"
TAG = "bench"
TARGETS = {"kvmhub-exec/ssh": 1.0, "kvmhub-cp/scp": 1.2, "kvmhub-customize/virt-customize": 0.8}
PAIRS = (("kvmhub-exec", "ssh"), ("kvmhub-cp", "scp"), ("kvmhub-customize", "virt-customize"),
         ("virtiofs-read", "disk-read"))
COMPARE = (
    "exec: `kvmhub exec VM -- true` vs `ssh root@IP true` (kvmhub's key), whole processes in the test host's "
    "network namespace; cp: `kvmhub cp` vs `scp -O` of the same random file into the guest's /tmp; customize: "
    "`kvmhub image customize` vs `virt-customize`, the same four edits (hostname, SSH key, a file, root password) "
    "on copies of one ext4 image; virtiofs-read/disk-read: dd of the same number of bytes in the guest, from a "
    "virtiofs share and from a second virtio disk (guest page cache dropped; ratio only, no target)"
)


@dataclass
class Bench:
    host: TestHost
    work: Path
    ip: str = ""
    disk: str = ""  # the guest's device of the second disk

    def in_net(self, argv: list[str]) -> list[str]:
        """``argv`` run in the test host's network namespace (where the guest's address answers)."""
        return ["nsenter", f"--target={self.host.holder_pid}", "--net", "--", *argv]

    def timed(self, argv: list[str], timeout: float = 600) -> float:
        start = time.perf_counter()
        run(self.in_net(argv), env=kvmhub_env(self.host), timeout=timeout)
        return time.perf_counter() - start

    def ssh_options(self) -> list[str]:
        return ["-i", str(private_key()), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.work / 'known_hosts'}",
                "-o", "LogLevel=ERROR"]

    def in_guest(self, script: str, timeout: float = 600) -> str:
        result = guest_run(self.host, VM, ["sh", "-c", script], timeout=timeout)
        if result.code != 0:
            raise CommandFailed(f"in the guest: {script!r} exited {result.code}: {result.out} {result.err}")
        return result.out

    def exec_round(self) -> dict[str, float]:
        return {"kvmhub-exec": self.timed([KVMHUB, "exec", VM, "--no-stdin", "--", "true"]),
                "ssh": self.timed(["ssh", *self.ssh_options(), f"root@{self.ip}", "true"])}

    def cp_round(self, payload: Path) -> dict[str, float]:
        took = {"kvmhub-cp": self.timed([KVMHUB, "cp", str(payload), f"{VM}:/tmp/bench-kvmhub"]),
                "scp": self.timed(["scp", "-O", "-q", *self.ssh_options(), str(payload),
                                   f"root@{self.ip}:/tmp/bench-scp"])}
        sums = self.in_guest("md5sum /tmp/bench-kvmhub /tmp/bench-scp | cut -d' ' -f1 | uniq | wc -l; "
                             "rm -f /tmp/bench-kvmhub /tmp/bench-scp")
        if sums.strip() != "1":
            raise CommandFailed("the copies in the guest differ")
        return took

    def customize_round(self, base: Path, edits: list[str], theirs: list[str]) -> dict[str, float]:
        start = time.perf_counter()
        kvmhub(self.host, "image", "customize", CUSTOM_IMAGE, *edits, timeout=600)
        ours = time.perf_counter() - start
        copy = self.work / "virt-customize.qcow2"
        shutil.copyfile(base, copy)
        env = {**os.environ, "LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
        start = time.perf_counter()
        run(["virt-customize", "-q", "-a", str(copy), *theirs], env=env, timeout=600)
        return {"kvmhub-customize": ours, "virt-customize": time.perf_counter() - start}

    def read_round(self, mib: int) -> dict[str, float]:
        clock = "cut -d' ' -f1 /proc/uptime"
        took = {}
        for name, source in (("virtiofs-read", f"/mnt/{TAG}/read.bin"), ("disk-read", self.disk)):
            out = self.in_guest(f"sync; echo 3 > /proc/sys/vm/drop_caches; t0=$({clock}); "
                                f"dd if={source} of=/dev/null bs=1M count={mib} 2>/dev/null; t1=$({clock}); "
                                "echo $t0 $t1")
            t0, t1 = (float(x) for x in out.split())
            took[name] = max(t1 - t0, 0.01)  # /proc/uptime counts hundredths
        return took


def make_custom_image(path: Path) -> None:
    """A 64 MiB ext4 disk that libguestfs's inspection takes for Debian: busybox, /etc with os-release, passwd,
    shadow, fstab, hostname."""
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True)
    g.disk_create(str(path), "qcow2", 64 << 20)
    g.set_backend_settings(["force_tcg"])
    g.add_drive_opts(str(path), format="qcow2")
    g.launch()
    g.mkfs("ext4", "/dev/sda")
    g.mount("/dev/sda", "/")
    for d in ("/bin", "/sbin", "/usr/bin", "/etc/ssh", "/root", "/var/log", "/var/lib", "/tmp"):
        g.mkdir_p(d)
    g.upload("/bin/busybox", "/bin/busybox")
    g.chmod(0o755, "/bin/busybox")
    g.ln_s("busybox", "/bin/sh")
    files = {
        "/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                           'ID=debian\n',
        "/etc/debian_version": "12.0\n",
        "/etc/fstab": "/dev/sda / ext4 defaults 0 1\n",
        "/etc/hostname": "mini\n",
        "/etc/hosts": "127.0.0.1 localhost\n127.0.1.1 mini\n",
        "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "/etc/shadow": "root:*:19000:0:99999:7:::\n",
        "/etc/group": "root:x:0:\n",
    }
    for name, text in files.items():
        g.write(name, text.encode())
    g.shutdown()
    g.close()


def setup(host: TestHost, work: Path, payload_mib: int, read_mib: int) -> Bench:
    """Pools, the tiny image, an isolated network, the running guest (its share and second disk filled)."""
    from kvmhub.tools.tiny.build import build_tiny_image

    log("building (or reusing) the tiny appliance image")
    image = build_tiny_image()
    kvmhub(host, "host", "setup", "--no-network")
    kvmhub(host, "image", "import", str(image), "--name", IMAGE_NAME)
    kvmhub(host, "net", "create", NET, "--mode", "isolated", "--subnet", SUBNET)
    share = work / "share"
    share.mkdir()
    with open(share / "read.bin", "wb") as fh:
        for _ in range(read_mib):
            fh.write(os.urandom(1 << 20))
    log(f"creating guest {VM}")
    kvmhub(host, "create", VM, "--image", IMAGE_NAME, "--network", NET, "--memory", MEMORY, "--share",
           f"{share}:{TAG}", "--wait", "--timeout", "300", timeout=330)
    bench = Bench(host, work)
    shown = json.loads(kvmhub(host, "show", VM, "--json"))
    bench.ip = next(ip for ip in shown["ips"] if ":" not in ip)
    kvmhub(host, "disk", "add", VM, "--size", f"{read_mib + 16}M", timeout=120)
    sectors = (read_mib + 16) * 2048
    # the new disk, found by its size (the seed's CD-ROM is a virtio disk too); filled with random bytes
    bench.disk = bench.in_guest(
        f"i=0; while ! [ -e /mnt/{TAG}/read.bin ] || ! grep -lx {sectors} /sys/block/vd*/size >/dev/null; do "
        "[ $i -lt 60 ] || { ls /dev/vd* /mnt >&2; exit 1; }; sleep 1; i=$((i+1)); done; "
        f"d=/dev/$(basename $(dirname $(grep -lx {sectors} /sys/block/vd*/size))); "
        f"dd if=/dev/urandom of=$d bs=1M count={read_mib} 2>/dev/null && sync && echo $d").strip()
    kvmhub(host, "cp", shutil.which("scp") or "/usr/bin/scp", f"{VM}:/usr/bin/scp")
    bench.in_guest("chmod 755 /usr/bin/scp")
    with open(work / "payload.bin", "wb") as fh:
        for _ in range(payload_mib):
            fh.write(os.urandom(1 << 20))
    return bench


def customize_setup(host: TestHost, work: Path) -> tuple[Path, list[str], list[str]]:
    """The ext4 image (imported for kvmhub, a file for virt-customize) and the same four edits in each tool's
    words."""
    base = work / "custom.qcow2"
    make_custom_image(base)
    kvmhub(host, "image", "import", str(base), "--name", CUSTOM_IMAGE)
    key = Path(f"{private_key()}.pub")
    secret = work / "password"
    secret.write_text("bench-password\n")
    ours = ["--hostname", "benched", "--ssh-key", f"root:{key}", "--write", "/etc/motd:benchmarked",
            "--password-file", f"root:{secret}"]
    theirs = ["--hostname", "benched", "--ssh-inject", f"root:file:{key}", "--write", "/etc/motd:benchmarked",
              "--root-password", f"file:{secret}"]
    return base, ours, theirs


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_guest",
        extra=[(("--cp-mib",), {"type": int, "default": 100, "help": "size of the file copied in (MiB)"}),
               (("--read-mib",), {"type": int, "default": 64, "help": "bytes read sequentially in the guest"}),
               (("--no-customize",), {"action": "store_true",
                                      "help": "leave out image customize vs virt-customize (two appliance "
                                              "launches per round, ~12 s each under TCG)"})],
        smoke={"cp_mib": 4, "read_mib": 16, "no_customize": True},
    )
    require_tools("virsh", "ssh", "scp", "nsenter")
    customize = not args.no_customize and shutil.which("virt-customize") is not None
    accel = accelerator_name()
    load_before = os.getloadavg()
    samples = Samples(order=[name for pair in PAIRS for name in pair])
    notes: dict[str, object] = {"compare": COMPARE, "bytecode": BYTECODE_NOTE, "cp_mib": args.cp_mib,
                                "read_mib": args.read_mib}
    if not customize:
        notes["customize"] = ("skipped: " + ("--smoke leaves it out (two libguestfs appliance launches, ~25 s "
                                             "under TCG); run without --smoke to measure it" if args.smoke else
                                             "--no-customize" if args.no_customize else "virt-customize missing"))
    work = Path(tempfile.mkdtemp(prefix="kvmhub-bench-guest-"))
    os.chmod(work, 0o755)  # noqa: S103 (virtiofsd and QEMU read the share)
    conf = work / "kvmhub.toml"
    conf.write_text(f'[shares]\nroots = ["{work}"]\n')
    os.environ["KVMHUB_CONFIG"] = str(conf)
    # a state directory of its own: its journal, and the SSH key kvmhub makes and injects
    os.environ["KVMHUB_STATE_DIR"] = str(work / "state")
    try:
        with private_host() as host:
            bench = setup(host, work, args.cp_mib, args.read_mib)
            rounds: list[tuple[str, Callable[[], dict[str, float]]]] = [
                ("exec", bench.exec_round),
                ("cp", lambda: bench.cp_round(work / "payload.bin")),
                ("read", lambda: bench.read_round(args.read_mib)),
            ]
            if customize:
                base, ours, theirs = customize_setup(host, work)
                rounds.append(("customize", lambda: bench.customize_round(base, ours, theirs)))
            try:
                for i in range(args.runs):
                    for what, step in rounds:
                        for name, seconds in step().items():
                            samples.add(name, seconds)
                        log(f"run {i + 1}/{args.runs}: {what} done")
            finally:
                kvmhub(host, "rm", VM)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes["loadavg"] = [load_before, os.getloadavg()]
    report(benchmark="guest", runs=args.runs, accelerator=accel, samples=samples, anchors=[], as_json=args.json,
           targets=TARGETS, notes=notes, extra_ratios=list(PAIRS))
    return 0


if __name__ == "__main__":
    script(main)
