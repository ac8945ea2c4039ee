"""Killing kvmhub mid-operation: what a host holds (to compare before and after), and a kill at a fault point."""

from __future__ import annotations

import difflib
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from lxml import etree

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB

LOG_DIRS = ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu/nvram", "/var/lib/libvirt/qemu/save")


def _lines(host: TestHost, *args: str) -> list[str]:
    return [x.strip() for x in host.virsh(*args).stdout.splitlines() if x.strip()]


def host_state(host: TestHost) -> dict[str, Any]:
    """Everything an operation may leave behind: domains, volumes, leases, DNS entries, secrets, firewall, files."""
    pool_dirs = {p: etree.fromstring(host.virsh("pool-dumpxml", p).stdout.encode()).findtext("target/path")
                 for p in _lines(host, "pool-list", "--all", "--name")}
    state: dict[str, Any] = {"domains": sorted(_lines(host, "list", "--all", "--uuid")),
                             "running": sorted(_lines(host, "list", "--uuid"))}
    for dom in _lines(host, "list", "--all", "--name"):
        state[f"dom {dom} snapshots"] = sorted(_lines(host, "snapshot-list", dom, "--name"))
        state[f"dom {dom} checkpoints"] = sorted(_lines(host, "checkpoint-list", dom, "--name"))
        # compared as XML, not as text: rewriting the metadata may indent it differently
        tree = etree.fromstring(host.virsh("dumpxml", "--inactive", dom).stdout.encode(),
                                etree.XMLParser(remove_blank_text=True))
        for disk in tree.iterfind("devices/disk[@type='volume']"):
            # a pool volume and its file are one disk: removing an external snapshot names the file
            src = disk.find("source")
            pool_dir = pool_dirs.get(src.get("pool") or "") if src is not None else None
            if src is not None and pool_dir is not None:
                volume = src.get("volume")
                disk.set("type", "file")
                src.attrib.clear()
                src.set("file", f"{pool_dir}/{volume}")
        state[f"dom {dom} xml"] = etree.tostring(tree, pretty_print=True).decode()
    active = set(_lines(host, "pool-list", "--name"))
    for pool in _lines(host, "pool-list", "--all", "--name"):
        state[f"pool {pool}"] = sorted(x.split()[0] for x in host.virsh("vol-list", pool).stdout.splitlines()
                                       if x.strip()) if pool in active else "inactive"
    for net in _lines(host, "net-list", "--all", "--name"):
        tree = etree.fromstring(host.virsh("net-dumpxml", net).stdout.encode())
        state[f"net {net} dhcp"] = sorted(f"{h.get('mac')}={h.get('ip')}" for h in tree.iterfind(".//dhcp/host"))
        state[f"net {net} dns"] = sorted(f"{h.get('ip')}={','.join(n.text or '' for n in h.iterfind('hostname'))}"
                                         for h in tree.iterfind(".//dns/host"))
    state["secrets"] = sorted(x.split()[0] for x in host.virsh("secret-list").stdout.splitlines() if x.strip())
    rules = host.run(["iptables-save"], check=False).stdout
    state["firewall"] = sorted(x for x in rules.splitlines() if "KVMHUB" in x)
    for d in LOG_DIRS:
        where = host.inside(d)
        state[d] = sorted(os.listdir(where)) if where.is_dir() else []
    return state


def kill_at(host: TestHost, argv: Sequence[str], step: str, *, sig: int = signal.SIGKILL,
            env: dict[str, str] | None = None, wait_s: float = 180.0) -> tuple[int, str]:
    """Run ``kvmhub ARGV`` until it reaches fault point ``step``, then send it ``sig``; its exit code and stderr."""
    full_env = {**os.environ, **host.env(), **(env or {}), "KVMHUB_INJECT_FAULT": f"hang:{step}"}
    proc = subprocess.Popen([*KVMHUB, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env)
    assert proc.stdout is not None
    deadline = time.monotonic() + wait_s
    seen = ""
    try:
        while f"fault point {step}: hanging" not in seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
            line = proc.stdout.readline() if ready else ""
            if not line:
                _, err = proc.communicate(timeout=30) if proc.poll() is not None or left <= 0 else ("", "")
                raise AssertionError(f"{' '.join(argv)} never reached {step}: exit {proc.poll()}\n{seen}{err}")
            seen += line
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def differences(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A readable diff of two host_state() results ('' when equal)."""
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, str) and isinstance(b, str):
            out += difflib.unified_diff(a.splitlines(), b.splitlines(), f"{key} before", f"{key} after", lineterm="")
        else:
            out.append(f"{key}: {a!r} -> {b!r}")
    return "\n".join(out)
