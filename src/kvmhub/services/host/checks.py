"""`kvmhub host check` and `kvmhub host setup`: what this host can do, and the fixes."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from kvmhub.errors import HostProblem, KvmhubError
from kvmhub.hv import Hypervisor, host_root, is_local_uri
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.models import CheckItem, CheckStatus, HostReport
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.host import accel
from kvmhub.services.network import networks
from kvmhub.services.storage import default_pools as pools
from kvmhub.tools import dhcp_release, iproute, unixsock
from kvmhub.validate import format_size

DAEMON_WAIT = 30.0
LOW_DISK = 5 * 1024**3


def _item(name: str, status: CheckStatus, detail: str, fix: str | None = None) -> CheckItem:
    return CheckItem(name=name, status=status, detail=detail, fix=fix)


def _check_cpu() -> CheckItem:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return _item("cpu virtualization", CheckStatus.SKIP, "cannot read /proc/cpuinfo")
    for flag, vendor in ((" vmx", "Intel VT-x"), (" svm", "AMD-V")):
        if flag + " " in flags or flags.count(flag + "\n"):
            return _item("cpu virtualization", CheckStatus.OK, f"{vendor} present")
    return _item(
        "cpu virtualization",
        CheckStatus.WARN,
        "no vmx/svm flag in /proc/cpuinfo (virtualization off in firmware, or a nested guest without it)",
        "enable VT-x/AMD-V in the firmware; guests still run under TCG emulation, slower",
    )


def _check_dev_kvm() -> CheckItem:
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return _item(
            "/dev/kvm",
            CheckStatus.WARN,
            "missing: the kvm module is not loaded or the CPU has no virtualization",
            "`modprobe kvm_intel` (or kvm_amd); guests run under TCG until then",
        )
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    mode = stat.S_IMODE(st.st_mode)
    detail = f"present, owner root:{group} mode {mode:04o}"
    if group != "kvm" or mode & 0o060 != 0o060:
        return _item(
            "/dev/kvm",
            CheckStatus.WARN,
            detail + " (libvirtd then re-probes QEMU on every start: each VM start takes ~40 s longer)",
            "`kvmhub host setup` (does: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm)",
        )
    return _item("/dev/kvm", CheckStatus.OK, detail)


def _check_accel(probe: accel.ProbeResult) -> CheckItem:
    if probe.accelerator == "kvm":
        return _item("accelerator", CheckStatus.OK, f"KVM: {probe.detail}")
    return _item(
        "accelerator",
        CheckStatus.WARN,
        f"{accel.TCG_WARNING} ({probe.detail})",
        "nothing to do for guests to run; for KVM speed, run on a host where KVM works "
        "(`kvmhub host check --reprobe` after changing it)",
    )


def _check_daemon(name: str, sock: str) -> CheckItem:
    path = host_root() + sock
    if os.path.exists(path):
        return _item(name, CheckStatus.OK, f"socket {sock} present")
    start = f"{name} -d" if not _has_systemd() else f"systemctl start {name}"
    return _item(name, CheckStatus.FAIL, f"not running (no socket {sock})", f"`{start}` or `kvmhub host setup`")


def _check_cgroups() -> CheckItem:
    ctl = Path("/sys/fs/cgroup/cgroup.controllers")
    if ctl.exists():
        have = set(ctl.read_text().split())
        missing = {"cpu", "memory", "io"} - have
        if missing:
            return _item(
                "cgroups",
                CheckStatus.WARN,
                f"cgroup v2 without controllers {', '.join(sorted(missing))}: those VM limits cannot apply",
                "boot with them enabled (e.g. `systemd.unified_cgroup_hierarchy=1`), or enable them in "
                "the parent cgroup's cgroup.subtree_control",
            )
        return _item("cgroups", CheckStatus.OK, f"cgroup v2 with {', '.join(sorted(have))}")
    if Path("/sys/fs/cgroup/cpu").exists():
        return _item("cgroups", CheckStatus.OK, "cgroup v1")
    return _item("cgroups", CheckStatus.WARN, "no cgroup file system mounted: VM limits cannot apply")


def _check_disk(path: str) -> CheckItem:
    probe_path = path
    while not os.path.exists(probe_path) and probe_path != "/":
        probe_path = os.path.dirname(probe_path)
    st = os.statvfs(probe_path)
    free = st.f_bavail * st.f_frsize
    detail = f"{format_size(free)} free under {path}"
    if free < LOW_DISK:
        return _item("free disk", CheckStatus.WARN, detail, "free space, or add a pool on a bigger disk")
    return _item("free disk", CheckStatus.OK, detail)


def _check_tools() -> list[CheckItem]:
    out = []
    needed = (("qemu-img", "qemu-utils"), ("qemu-system-x86_64", "qemu-system-x86"))
    for tool, pkg in needed:
        if shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"):
            out.append(_item(tool, CheckStatus.OK, "installed"))
        else:
            out.append(_item(tool, CheckStatus.FAIL, "not installed", f"`apt-get install {pkg}`"))
    return out


def check(uri: str | None = None, *, reprobe: bool = False) -> HostReport:
    """Check the host behind `uri`; every problem found comes with its fix. Never hangs."""
    hv = Hypervisor(uri, timeout=10.0)
    local = is_local_uri(hv.uri)
    checks: list[CheckItem] = []
    if local:
        checks += [_check_cpu(), _check_dev_kvm()]
    probe = accel.accelerator(refresh=reprobe) if local else None
    if probe is not None:
        checks.append(_check_accel(probe))
    if local:
        checks.append(_check_daemon("virtlogd", "/run/libvirt/virtlogd-sock"))
    try:
        lib, qemu = hv_domains.versions(hv)
        checks.append(_item("libvirtd", CheckStatus.OK, f"reachable at {hv.uri}: libvirt {lib}, QEMU {qemu}"))
        reachable = True
    except KvmhubError as exc:
        checks.append(_item("libvirtd", CheckStatus.FAIL, exc.message, exc.hint))
        reachable = False
    if reachable:
        checks.extend(pools.check_pools(hv))
        checks.append(_check_default_network(hv))
    if local:
        checks += [_check_cgroups(), _check_disk("/var/lib/libvirt/images"), *_check_tools()]
        checks += [_check_dnsmasq(), _check_dhcp_release(), _check_ip_forward(), _check_forward_policy()]
    hv.close()
    chosen: accel.Accel = probe.accelerator if probe is not None else "kvm"
    return HostReport(uri=hv.uri, accelerator=chosen, domain_type=accel.domain_type(chosen), checks=checks)


def _check_default_network(hv: Hypervisor) -> CheckItem:
    try:
        net = hv_networks.lookup_network(hv, "default")
    except KvmhubError:
        return _item("network default", CheckStatus.WARN, "not defined", "`kvmhub host setup`")
    if not net.is_active():
        return _item("network default", CheckStatus.WARN, "defined but inactive", "`kvmhub host setup`")
    return _item("network default", CheckStatus.OK, "active")


def _check_dnsmasq() -> CheckItem:
    if shutil.which("dnsmasq") or os.path.exists("/usr/sbin/dnsmasq"):
        return _item("dnsmasq", CheckStatus.OK, "installed")
    return _item(
        "dnsmasq",
        CheckStatus.FAIL,
        "not installed: libvirt's nat, isolated and open networks cannot give VMs addresses (DHCP) or names (DNS)",
        "`apt-get install dnsmasq-base`",
    )


def _check_dhcp_release() -> CheckItem:
    if dhcp_release.available():
        return _item("dhcp_release", CheckStatus.OK, "installed")
    return _item(
        "dhcp_release",
        CheckStatus.WARN,
        "not installed: a removed VM's address stays leased for up to an hour, and a VM given it meanwhile gets "
        "another address after a ~3 s wait",
        f"`apt-get install {dhcp_release.PACKAGE}`",
    )


def _read_sysctl(key: str) -> str | None:
    """A /proc/sys value as the host's network namespace sees it (None when unreadable).

    /proc/sys/net answers for the namespace of the process reading it, so a test host's is read from inside.
    """
    path = f"/proc/sys/{key}"
    if iproute.netns_pid() is None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None
    try:
        proc = iproute.run_in_netns(["cat", path], timeout=10.0)
    except KvmhubError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _check_ip_forward() -> CheckItem:
    value = _read_sysctl("net/ipv4/ip_forward")
    if value is None:
        return _item("ip forwarding", CheckStatus.SKIP, "cannot read /proc/sys/net/ipv4/ip_forward")
    if value == "1":
        return _item("ip forwarding", CheckStatus.OK, "on (net.ipv4.ip_forward=1)")
    return _item(
        "ip forwarding",
        CheckStatus.WARN,
        "off (net.ipv4.ip_forward=0): VMs on nat and routed networks cannot reach beyond the host",
        "`sysctl -w net.ipv4.ip_forward=1` and keep it: "
        "`echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-kvmhub.conf` "
        "(libvirt also sets it when it starts a nat network)",
    )


def _allows_libvirt(rule: str) -> bool:
    """True for an iptables rule that lets libvirt's bridges through (libvirt's own chains or a virbr+ ACCEPT)."""
    return ("virbr" in rule and rule.rstrip().endswith("-j ACCEPT")) or (
        rule.startswith("-A FORWARD") and "-j LIBVIRT_FW" in rule
    )


def iptables_forward_drop(rules: str) -> str | None:
    """From `iptables -S` output: the fix when FORWARD's policy is DROP and nothing lets libvirt's bridges through.

    None when the policy is ACCEPT or a rule already accepts their traffic.
    """
    lines = rules.splitlines()
    if "-P FORWARD DROP" not in (line.strip() for line in lines):
        return None
    if any(_allows_libvirt(line) for line in lines if line.startswith("-A ")):
        return None
    # Docker re-creates FORWARD at each start but leaves DOCKER-USER alone: rules there last.
    chain = "DOCKER-USER" if "-N DOCKER-USER" in lines else "FORWARD"
    return (
        f"`iptables -I {chain} -i virbr+ -j ACCEPT && "
        f"iptables -I {chain} -o virbr+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`"
    )


def _nft_mentions_virbr(expr: object) -> bool:
    if isinstance(expr, str):
        return expr.startswith("virbr")
    if isinstance(expr, dict):
        return any(_nft_mentions_virbr(v) for v in expr.values())
    if isinstance(expr, list):
        return any(_nft_mentions_virbr(v) for v in expr)
    return False


def nft_forward_drops(ruleset: str, *, skip: Collection[tuple[str, str, str]] = ()) -> list[tuple[str, str]]:
    """From `nft -j list ruleset`: (where, fix) for each forward-hook chain with policy drop that has no rule
    accepting libvirt's bridges (virbr*) in its table. ``skip`` holds (family, table, chain) already reported.

    A packet passes only if every forward base chain accepts it, so libvirt's own accepting table cannot
    outvote another table's drop.
    """
    try:
        items = json.loads(ruleset).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    chains = [x["chain"] for x in items if isinstance(x, dict) and "chain" in x]
    rules = [x["rule"] for x in items if isinstance(x, dict) and "rule" in x]
    found = []
    for chain in chains:
        if chain.get("hook") != "forward" or chain.get("policy") != "drop":
            continue
        family, table, name = chain.get("family", ""), chain.get("table", ""), chain.get("name", "")
        if (family, table, name) in skip:
            continue
        allowed = any(
            r.get("family") == family and r.get("table") == table
            and _nft_mentions_virbr(r.get("expr")) and any("accept" in e for e in r.get("expr", []))
            for r in rules
        )
        if not allowed:
            fix = (
                f"`nft insert rule {family} {table} {name} iifname \"virbr*\" accept && "
                f"nft insert rule {family} {table} {name} oifname \"virbr*\" ct state related,established accept`"
            )
            found.append((f"nft chain {family} {table} {name}", fix))
    return found


def _firewall_output(argv: list[str]) -> str | None:
    """stdout of a firewall listing run in the host's network namespace; None when absent or refused."""
    if not shutil.which(argv[0]) and not os.path.exists(f"/usr/sbin/{argv[0]}"):
        return None
    try:
        proc = iproute.run_in_netns(argv, timeout=10.0)
    except KvmhubError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _check_forward_policy() -> CheckItem:
    iptables = _firewall_output(["iptables", "-w", "5", "-S"])
    nft = _firewall_output(["nft", "-j", "list", "ruleset"])
    if iptables is None and nft is None:
        return _item("forward chain", CheckStatus.SKIP, "cannot read the firewall (no iptables/nft, or not root)")
    problems: list[tuple[str, str]] = []
    fix = iptables_forward_drop(iptables) if iptables is not None else None
    if fix is not None:
        problems.append(("iptables FORWARD", fix))
    # iptables-nft shows its FORWARD chain in nft too: do not report it twice
    seen = {("ip", "filter", "FORWARD")} if iptables is not None else set()
    problems += nft_forward_drops(nft, skip=seen) if nft is not None else []
    if not problems:
        return _item("forward chain", CheckStatus.OK, "no forward chain drops VMs' routed traffic")
    # without br_netfilter the file is absent and bridged frames skip iptables
    bridged = _read_sysctl("net/bridge/bridge-nf-call-iptables") == "1"
    origin = " (left by Docker)" if iptables is not None and "DOCKER-USER" in iptables else ""
    fixes = [fix for _, fix in problems]
    also = ""
    if bridged:
        also = " (and, as net.bridge.bridge-nf-call-iptables=1, VMs on host bridges: --mode bridge)"
        user_chain = "DOCKER-USER" if origin else "FORWARD"
        fixes.append(f"for a host bridge BR: `iptables -I {user_chain} -i BR -o BR -j ACCEPT` "
                     "or `sysctl -w net.bridge.bridge-nf-call-iptables=0`")
    return _item(
        "forward chain",
        CheckStatus.WARN,
        f"policy DROP in {', '.join(where for where, _ in problems)}{origin} with no rule for "
        f"libvirt's bridges: it blocks VMs' traffic beyond the host{also}",
        "; ".join(fixes) + " (then make it permanent in the firewall's configuration)",
    )


def _has_systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise HostProblem(
            f"`{' '.join(argv)}` failed",
            cause=(proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}",
        )


def _wait_for(path: str, what: str) -> None:
    deadline = time.monotonic() + DAEMON_WAIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise HostProblem(
                f"{what} did not come up within {DAEMON_WAIT:.0f} s",
                cause=f"its socket {path} never appeared",
                hint="look at /var/log/libvirt/ and run the daemon in the foreground to see why",
            )
        time.sleep(0.2)


def ensure_daemons(report: Reporter) -> None:
    """Start virtlogd and libvirtd if they are not running (systemd when present, else -d)."""
    for name, sock in (("virtlogd", "/run/libvirt/virtlogd-sock"), ("libvirtd", "/run/libvirt/libvirt-sock")):
        if os.path.exists(sock) and unixsock.answers(sock):
            continue
        if _has_systemd():
            _run(["systemctl", "start", name])
        else:
            if os.path.exists(sock):
                os.unlink(sock)  # stale socket from a daemon that died
            _run([name, "-d"])
        _wait_for(sock, name)
        report.phase(f"started {name}")


def fix_dev_kvm(report: Reporter) -> None:
    """Make /dev/kvm root:kvm 0660, as udev does on ordinary hosts."""
    if not os.path.exists("/dev/kvm"):
        return
    try:
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        _run(["groupadd", "--system", "kvm"])
        gid = grp.getgrnam("kvm").gr_gid
    st = os.stat("/dev/kvm")
    if st.st_gid != gid or stat.S_IMODE(st.st_mode) != 0o660:
        os.chown("/dev/kvm", 0, gid)
        os.chmod("/dev/kvm", 0o660)
        report.phase("/dev/kvm is now root:kvm 0660")


def setup(uri: str | None = None, *, report: Reporter = QUIET, network: bool = True) -> HostReport:
    """Apply the fixes `check` names, idempotently, then check again."""
    hv = Hypervisor(uri)
    if is_local_uri(hv.uri) and not host_root():
        if os.geteuid() != 0:
            raise HostProblem("{cmd:host setup} changes the host", hint="run it as root")
        fix_dev_kvm(report)
        ensure_daemons(report)
    for line in pools.ensure_pools(hv):
        report.phase(line)
    if network:
        for line in networks.ensure_default(hv):
            report.phase(line)
    hv.close()
    return check(uri)

