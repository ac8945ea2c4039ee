"""Private libvirt test hosts: a ``libvirtd`` + ``virtlogd`` pair in their own mount and network namespaces.

A :class:`TestHost` never touches the machine's own libvirt. A holder process made by
``unshare --mount --net`` binds temp dirs over ``/run/libvirt``, ``/etc/libvirt`` (a cleaned copy of the real
one), ``/var/lib/libvirt``, ``/var/log/libvirt`` and ``/var/cache/libvirt``, starts the daemons and then
stays as the namespaces' anchor and reaper. Clients in the root namespace reach the daemon over its private unix
socket (:attr:`TestHost.uri`); :meth:`TestHost.run` executes commands inside the namespaces. Networks,
bridges, dnsmasq and guests exist only inside them.

Several hosts can run at once. A :class:`TestSwitch` joins hosts with veth pairs through a bridge in its own
network namespace; hosts on a switch listen on ``qemu+tcp`` with their own ``host_uuid`` so migration runs
between real daemons. Nothing is routed outside these namespaces.

Crash safety: each host records itself in ``<base>/<id>/`` (``$KVMHUB_TESTHOST_BASE``, default
``/tmp/kvmhub-testhosts``); :func:`cleanup_stale` (run by every :meth:`TestHost.start`) removes hosts whose
owner died. Live hosts are also stopped at interpreter exit and on SIGTERM.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from kvmhub.errors import HostProblem
from kvmhub.testing import _procs
from kvmhub.testing._owned import DAEMON_ENV, Owned
from kvmhub.testing._procs import cleanup_stale
from kvmhub.testing.switch import TestSwitch

__all__ = ["TestHost", "TestSwitch", "cleanup_stale", "missing_requirements"]

T = TypeVar("T")

REQUIRED_TOOLS = ("libvirtd", "virtlogd", "unshare", "nsenter", "ip", "mount")
# Shared QEMU capability cache: libvirt revalidates it, so a fresh host skips the ~4 s probe.
_CAPS_CACHE = ".qemu-capabilities"


def missing_requirements() -> list[str]:
    """Why a test host cannot start here (not root, missing tools); empty when it can."""
    problems = [] if os.geteuid() == 0 else ["not running as root"]
    path = DAEMON_ENV["PATH"]
    problems += [f"{tool} not found" for tool in REQUIRED_TOOLS if shutil.which(tool, path=path) is None]
    if not Path("/etc/libvirt").is_dir():
        problems.append("/etc/libvirt missing (libvirt-daemon not installed)")
    return problems


def _call_with_timeout(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run a blocking call (a libvirt call has no timeout of its own) in a thread, bounded by ``timeout``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"testhost: {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise HostProblem(f"{what} did not finish within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


class TestHost(Owned):
    """One private libvirt host. Start it, point libvirt clients at :attr:`uri`, stop it.

    ``switch``: join that :class:`TestSwitch` (the host then also listens on :attr:`tcp_uri`).
    ``base``: parent of the host dir (default ``$KVMHUB_TESTHOST_BASE`` or ``/tmp/kvmhub-testhosts``).
    ``log_level``: libvirt log level written to ``<dir>/libvirtd.log`` (1 debug .. 4 errors).
    """

    __test__ = False  # not a pytest test class despite the name
    kind = "host"

    def __init__(
        self,
        *,
        switch: TestSwitch | None = None,
        base: Path | None = None,
        log_level: int = 3,
        name: str | None = None,
    ) -> None:
        super().__init__(base, name)
        self.switch = switch
        self.log_level = log_level
        self.host_uuid = str(uuid.uuid4())
        self.address: ipaddress.IPv4Address | None = None

    # -- where things are -------------------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """The daemon's read-write unix socket, as seen from the root namespace."""
        return self.dir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """Connection URI for clients in the root namespace."""
        return f"qemu+unix:///system?socket={self.socket_path}"

    @property
    def tcp_uri(self) -> str:
        """``qemu+tcp`` URI reachable from other hosts on the same switch (not from the root namespace)."""
        if self.address is None:
            raise HostProblem(f"test host {self.id} is on no switch", hint="TestHost(switch=...)")
        return f"qemu+tcp://{self.address}/system"

    @property
    def host_root(self) -> Path:
        """The filesystem as the private libvirtd sees it (``/proc/<holder>/root``), readable from outside."""
        return Path(f"/proc/{self.holder_pid}/root")

    @property
    def images_dir(self) -> Path:
        """The private ``/var/lib/libvirt/images``, as a root-namespace path."""
        return self.dir / "lib" / "images"

    @property
    def libvirtd_log(self) -> Path:
        """libvirtd's log file."""
        return self.dir / "libvirtd.log"

    def inside(self, path: str | os.PathLike[str]) -> Path:
        """The root-namespace path of ``path`` as the private daemon sees it (e.g. a domain's serial log)."""
        return self.host_root / Path(path).relative_to("/")

    def env(self) -> dict[str, str]:
        """Environment variables that point a kvmhub process at this host."""
        return {"KVMHUB_URI": self.uri, "KVMHUB_HOST_ROOT": str(self.host_root)}

    # -- life -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Self:
        """Start the namespaces and daemons and wait until libvirtd answers.

        Cleans stale hosts first. Raises :class:`HostProblem` (with the daemon log tail) if anything fails
        or ``timeout`` runs out; nothing is left behind then.
        """
        if missing := missing_requirements():
            raise HostProblem("cannot start a test host: " + "; ".join(missing))
        _procs.cleanup_stale(self.base)
        deadline = time.monotonic() + timeout
        began = time.monotonic()
        self._claim_dir()
        try:
            if self.switch is not None:
                self.address = self.switch.allocate()
            self._write_config()
            args = ["host", str(self.dir), "yes" if self.switch else "no"]
            holder = self._launch(["--mount", "--net"], args, deadline)
            if self.switch is not None and self.address is not None:
                self.switch.attach(self, self.address)
            holder.send("go")
            holder.expect("READY", deadline)
            self._wait_answering(deadline)
            self._save_caps()
        except BaseException:
            with contextlib.suppress(HostProblem):
                self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Destroy guests and networks through libvirt, kill every process of the host, remove its dir.

        Safe to call twice. Raises :class:`HostProblem` if a process survives SIGKILL.
        """
        if self._lock_fd is None:
            return
        if self.running:
            with contextlib.suppress(Exception):
                _call_with_timeout(self._destroy_all, 30.0, f"destroying guests of test host {self.id}")
        self._teardown()

    def _gentle_pids(self) -> list[int]:
        # libvirtd and virtlogd get SIGTERM (clean shutdown); the rest is killed outright.
        pids = []
        for name in ("libvirtd.pid", "virtlogd.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.dir / "run" / name).read_text().strip()))
        return pids

    def _destroy_all(self) -> None:
        import libvirt

        def quietly(obj: Any) -> None:
            with contextlib.suppress(libvirt.libvirtError):
                obj.destroy()

        conn = libvirt.open(self.uri)
        try:
            # A destroy takes ~2 s (QEMU's exit); do them all at once.
            threads = [
                threading.Thread(target=quietly, args=(dom,), daemon=True)
                for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
                quietly(net)
        finally:
            conn.close()

    def _write_config(self) -> None:
        for sub in ("run", "lib/images", "lib/qemu", "lib/dnsmasq", "log/qemu", "cache/qemu/capabilities"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        etc = self.dir / "etc"
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        # The real host's guests, pools, secrets, autostart links and hook scripts must not run here.
        for junk in ("hooks", "storage", "secrets", "qemu/autostart", "qemu/networks/autostart"):
            shutil.rmtree(etc / junk, ignore_errors=True)
        for xml in (etc / "qemu").glob("*.xml"):
            xml.unlink()
        (etc / "qemu" / "networks" / "autostart").mkdir(parents=True, exist_ok=True)
        libvirtd = [
            'unix_sock_group = "root"',
            'unix_sock_ro_perms = "0777"',
            'unix_sock_rw_perms = "0770"',
            'auth_unix_ro = "none"',
            'auth_unix_rw = "none"',
            f'host_uuid = "{self.host_uuid}"',
            f'log_outputs = "{self.log_level}:file:{self.dir}/libvirtd.log"',
            "listen_tls = 0",
            "listen_tcp = 1" if self.switch else "listen_tcp = 0",
            'auth_tcp = "none"',
        ]
        qemu = ['user = "root"', 'group = "root"', 'security_driver = "none"']
        if self.address is not None:
            # Hostnames are shared by all namespaces; migration must advertise the switch address.
            qemu.append(f'migration_host = "{self.address}"')
        virtlogd = [f'log_outputs = "3:file:{self.dir}/virtlogd.log"']
        (etc / "libvirtd.conf").write_text("\n".join(libvirtd) + "\n")
        (etc / "qemu.conf").write_text("\n".join(qemu) + "\n")
        (etc / "virtlogd.conf").write_text("\n".join(virtlogd) + "\n")
        shared = self.base / _CAPS_CACHE
        if shared.is_dir():
            for cached in shared.glob("*.xml"):
                shutil.copy2(cached, self.dir / "cache" / "qemu" / "capabilities" / cached.name)

    def _save_caps(self) -> None:
        shared = self.base / _CAPS_CACHE
        shared.mkdir(exist_ok=True)
        for probed in (self.dir / "cache" / "qemu" / "capabilities").glob("*.xml"):
            tmp = shared / f".{probed.name}.{self.id}"
            shutil.copy2(probed, tmp)
            tmp.replace(shared / probed.name)

    def _wait_answering(self, deadline: float) -> None:
        while not self.socket_path.is_socket():
            if time.monotonic() > deadline:
                raise self._problem("libvirtd socket did not appear")
            time.sleep(0.05)

        def probe() -> None:
            import libvirt

            conn = libvirt.open(self.uri)
            try:
                # Forces the QEMU capability probe now rather than in the first test.
                conn.getDomainCapabilities(None, None, None, "qemu", 0)
            finally:
                conn.close()

        try:
            left = max(1.0, deadline - time.monotonic())
            _call_with_timeout(probe, left, f"libvirtd of test host {self.id}")
        except HostProblem as exc:
            raise self._problem(exc.message) from exc
        except Exception as exc:
            raise self._problem(f"libvirtd does not answer: {exc}") from exc

    def _problem(self, message: str) -> HostProblem:
        return HostProblem(
            f"test host {self.id}: {message}",
            cause=f"see {self.libvirtd_log} and {self.dir / 'virtlogd.log'}",
            original=f"libvirtd.log tail:\n{_procs.tail(self.libvirtd_log)}\n"
            f"virtlogd.log tail:\n{_procs.tail(self.dir / 'virtlogd.log', 5)}",
        )

    # -- commands inside --------------------------------------------------------------------------------

    def nsenter_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so it runs inside the host's mount and network namespaces."""
        return ["nsenter", f"--target={self.holder_pid}", "--mount", "--net", "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host and capture its output as text.

        Raises :class:`HostProblem` on timeout, or on a non-zero exit when ``check``.
        """
        full = self.nsenter_argv(argv)
        try:
            done = subprocess.run(
                full,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                env=dict(env) if env is not None else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HostProblem(f"test host {self.id}: {argv[0]} ran over {timeout:.0f} s") from exc
        if check and done.returncode != 0:
            raise HostProblem(
                f"test host {self.id}: {' '.join(argv)} exited {done.returncode}",
                original=(done.stderr or done.stdout).strip(),
            )
        return done

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host; ``kwargs`` go to :class:`subprocess.Popen` (never ``shell``).

        The process is killed by :meth:`stop` if still running.
        """
        if kwargs.get("shell"):
            raise HostProblem("TestHost.popen never runs a shell")
        return subprocess.Popen(self.nsenter_argv(argv), **kwargs)

    def virsh(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``virsh -c <uri> args...`` from the root namespace against this host."""
        argv = ["virsh", "-q", "-c", self.uri, *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HostProblem(f"test host {self.id}: virsh {args[:1]} ran over {timeout:.0f} s") from exc
        if check and done.returncode != 0:
            raise HostProblem(f"virsh {' '.join(args)} failed on test host {self.id}", original=done.stderr)
        return done

    def connect(self) -> Any:
        """A new ``libvirt.virConnect`` to this host (the caller closes it)."""
        import libvirt

        return libvirt.open(self.uri)

    def log_tail(self, lines: int = 40) -> str:
        """The end of libvirtd's log, for assertion messages."""
        return _procs.tail(self.libvirtd_log, lines)
