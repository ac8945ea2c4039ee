"""The process that lives inside a test host's (or switch's) namespaces; run by ``unshare`` as a script.

``python _holder.py host <dir> <yes|no>``: make mounts private, bind ``<dir>/{run,etc,lib,log,cache}`` over
libvirt's directories, bring ``lo`` up, print ``NS <pid>``, wait for a line on stdin (the owner plumbs the
switch link meanwhile), start virtlogd and libvirtd (``--listen`` when ``yes``), print ``READY``.

``python _holder.py switch <dir>``: bring ``lo`` up, create bridge ``br0``, print ``NS <pid>`` and ``READY``.

Then it stays as the namespaces' anchor and, being a child subreaper, reaps the daemons and QEMU processes
that libvirt double-forks: without that they would wait for PID 1, and libvirt's domain destroy polls until
QEMU's zombie is gone. Uses the standard library only; nothing of kvmhub is imported.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36
BINDS = (
    ("run", "/run/libvirt"),
    ("etc", "/etc/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
)


def sh(*argv: str) -> None:
    """Run a command; a failure ends the holder with the command's message (the owner reports it)."""
    subprocess.run(argv, check=True)


def setup_host(dir_: str, listen: bool) -> None:
    """Private mounts, loopback, then (after the owner's go-ahead) the two daemons."""
    sh("mount", "--make-rprivate", "/")
    for sub, target in BINDS:
        os.makedirs(target, exist_ok=True)
        sh("mount", "--bind", os.path.join(dir_, sub), target)
    sh("ip", "link", "set", "lo", "up")
    print("NS", os.getpid(), flush=True)
    if not sys.stdin.readline():
        raise SystemExit("holder: owner closed stdin before the go-ahead")
    sh("virtlogd", "-d", "-p", os.path.join(dir_, "run", "virtlogd.pid"))
    sh("libvirtd", "-d", *(["--listen"] if listen else []), "-p", os.path.join(dir_, "run", "libvirtd.pid"))


def setup_switch() -> None:
    """Loopback and the bridge every host's veth joins."""
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "link", "set", "br0", "up")
    print("NS", os.getpid(), flush=True)


def reap_forever() -> None:
    """Reap every child and orphan handed to us; SIGCHLD stays blocked so none is missed between waits."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        signal.sigtimedwait({signal.SIGCHLD}, 5.0)


def main(argv: list[str]) -> int:
    """Entry point: ``host <dir> <yes|no>`` or ``switch <dir>``."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("prctl(PR_SET_CHILD_SUBREAPER) failed", file=sys.stderr)
        return 1
    try:
        if argv[0] == "host":
            setup_host(argv[1], argv[2] == "yes")
        else:
            setup_switch()
    except subprocess.CalledProcessError as exc:
        print(f"holder: {' '.join(map(str, exc.cmd))} exited {exc.returncode}", file=sys.stderr)
        return 1
    print("READY", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    reap_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
