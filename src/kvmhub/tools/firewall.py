"""Port-forward rules in the VM host's firewall (iptables; nf_tables backend on Debian 12).

kvmhub keeps its rules in two chains of its own, jumped to from the built-in ones, and tags each rule
with a comment naming the VM, so they can be listed, replaced and removed without touching anyone
else's rules (libvirt's included):

    nat    KVMHUB-DNAT  <- PREROUTING, OUTPUT (to local addresses)   DNAT host:port -> guest:port
    filter KVMHUB-FWD   <- FORWARD (first)                           ACCEPT new connections to guest:port
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

from kvmhub.errors import HostProblem
from kvmhub.hv import host_root
from kvmhub.models import PortForward

NAT_CHAIN = "KVMHUB-DNAT"
FWD_CHAIN = "KVMHUB-FWD"
_JUMPS: tuple[tuple[str, str, list[str], str], ...] = (
    ("nat", "PREROUTING", [], NAT_CHAIN),
    ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL"], NAT_CHAIN),
    ("filter", "FORWARD", [], FWD_CHAIN),
)


def _argv(args: list[str]) -> list[str]:
    """iptables in the network namespace of the host libvirtd runs on (a test host's, when set)."""
    if not shutil.which("iptables"):
        raise HostProblem("iptables is not installed", hint="`apt-get install iptables`")
    base = ["iptables", "-w", "5", *args]
    root = host_root()
    if root:
        pid = root.split("/")[2]  # /proc/PID/root
        return ["nsenter", f"--target={pid}", "--net", *base]
    return base


def _run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_argv(args), capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise HostProblem(
            f"firewall change failed: iptables {' '.join(args)}",
            cause=proc.stderr.strip() or f"exit code {proc.returncode}",
            hint="kvmhub needs root on the VM's host for port forwards",
        )
    return proc


def ensure_chains() -> None:
    """Create kvmhub's chains and the jumps to them (idempotent)."""
    for table, chain, match, target in _JUMPS:
        _run(["-t", table, "-N", target], check=False)  # exists already: fine
        if _run(["-t", table, "-C", chain, *match, "-j", target], check=False).returncode != 0:
            _run(["-t", table, "-I", chain, "1", *match, "-j", target])


def _tag(vm: str) -> str:
    return f"kvmhub:{vm}"


def rules_of(vm: str) -> list[tuple[str, list[str]]]:
    """kvmhub's current rules for `vm` as (table, `-A ...` argument list)."""
    out = []
    for table, chain in (("nat", NAT_CHAIN), ("filter", FWD_CHAIN)):
        listing = _run(["-t", table, "-S", chain], check=False)
        for line in listing.stdout.splitlines():
            if f'"{_tag(vm)}"' in line or f" {_tag(vm)} " in f"{line} ":
                out.append((table, shlex.split(line)))
    return out


def clear(vm: str) -> int:
    """Remove every kvmhub rule of `vm`; returns how many were removed."""
    rules = rules_of(vm)
    for table, args in rules:
        _run(["-t", table, "-D", *args[1:]])
    return len(rules)


def apply(vm: str, guest_ip: str, forwards: list[PortForward]) -> None:
    """Make `vm`'s rules exactly `forwards` to `guest_ip` (old ones removed first)."""
    ensure_chains()
    clear(vm)
    tag = ["-m", "comment", "--comment", _tag(vm)]
    for f in forwards:
        dst = ["-d", f.host_ip] if f.host_ip else []
        _run(["-t", "nat", "-A", NAT_CHAIN, *dst, "-p", f.proto, "--dport", str(f.host_port), *tag,
              "-j", "DNAT", "--to-destination", f"{guest_ip}:{f.guest_port}"])
        _run(["-t", "filter", "-A", FWD_CHAIN, "-d", guest_ip, "-p", f.proto, "--dport", str(f.guest_port),
              *tag, "-j", "ACCEPT"])
