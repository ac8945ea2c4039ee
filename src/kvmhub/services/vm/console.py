"""The serial console over a libvirt stream: interactive (Ctrl-] leaves) or its log; the graphical display
through a socket libvirt connects to it."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from typing import Any

from kvmhub.errors import Conflict, HostProblem, KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.services.vm import lifecycle as vms
from kvmhub.services.vm import readiness
from kvmhub.tools import terminal
from kvmhub.xml.chardev import has_console
from kvmhub.xml.graphics import vnc_listen

ESCAPE = terminal.ESCAPE


def log(hv: Hypervisor, name: str) -> str:
    """The serial log's text (everything the guest printed on ttyS0 since it last started)."""
    dom = vms.get(hv, name)
    path = readiness.serial_log(dom)
    if path is None:
        raise HostProblem(
            f"the serial log of {name} is not reachable from here",
            cause="the VM runs on a remote host, or has no serial log configured",
            hint=f"use the interactive console: {{cmd:console {name}}}",
        )
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        return fh.read().decode(errors="replace")


def interactive(hv: Hypervisor, name: str, *, stdin_fd: int | None = None, stdout: Any = None) -> None:
    """Attach the terminal to the VM's serial console until Ctrl-] or the VM stops."""
    stream = open_stream(hv, name)
    in_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    out = stdout or sys.stdout.buffer
    stop = threading.Event()

    def pump_out() -> None:
        # a non-blocking stream: recv returns -2 when no data is there yet
        while not stop.is_set():
            try:
                data = stream.recv(4096)
            except Exception:
                break
            if data == -2:
                stop.wait(0.02)
                continue
            if not data:
                break
            out.write(data)
            out.flush()
        stop.set()

    reader = threading.Thread(target=pump_out, name="console-out", daemon=True)
    reader.start()
    try:
        terminal.send_keys(name, in_fd, out, lambda data: _send_all(stream, data), stop)
    finally:
        try:
            stream.abort()
        except Exception:  # noqa: S110 - the stream may already be closed by the VM stopping
            pass
        reader.join(timeout=2)


def open_stream(hv: Hypervisor, name: str) -> Any:
    """A non-blocking libvirt stream on a running VM's serial console (``recv``/``send`` answer -2 when they
    would block; ``abort`` ends it). Raises NotFound, or Conflict when the VM is not running, has no serial
    console, or another session holds it."""
    dom = vms.get(hv, name)
    if dom.state() not in ("running", "paused"):
        raise Conflict(f"VM {name} is not running", hint=f"start it: {{cmd:start {name}}}", code="vm.wrong_state")
    if not has_console(dom.xml()):
        raise Conflict(f"VM {name} has no serial console", cause="its definition has no <serial> or <console>",
                       hint="add a serial port to the VM's definition and restart it", code="vm.no_console")
    try:
        return dom.open_console()
    except KvmhubError as exc:
        if "active console session" in (exc.original or ""):
            raise Conflict(
                f"another console is attached to {name}",
                cause="libvirt allows one console session per VM",
                hint="close the other session (virsh console / kvmhub console) and retry",
                original=exc.original,
            ) from None
        raise


def check_display(hv: Hypervisor, name: str) -> None:
    """Refuse a VM whose VNC display is missing, not running, or reachable from the network.

    A display listening on a routable address skips every access check kvmhub makes, so only loopback and unix
    sockets are served. Raises NotFound or Conflict.
    """
    dom = vms.get(hv, name)
    if dom.state() not in ("running", "paused"):
        raise Conflict(f"VM {name} is not running", hint=f"start it: {{cmd:start {name}}}", code="vm.wrong_state")
    listen = vnc_listen(dom.xml())
    if listen is None:
        raise NotFound(f"VM {name} has no VNC display", hint="define it with a VNC display on 127.0.0.1",
                       code="vm.no_display")
    kind, where = listen
    if kind == "address" and not _loopback(where):
        raise Conflict(
            f"the VNC display of {name} listens on {where}, not on loopback",
            cause="anyone who reaches that address can use the display without kvmhub's tokens",
            hint="set the display's listen address to 127.0.0.1 (or a unix socket) and restart the VM",
            code="vm.display_exposed",
        )


def open_display(hv: Hypervisor, name: str) -> socket.socket:
    """A stream socket connected to the VM's VNC server, after :func:`check_display` (the VNC handshake and a
    password, if set, are left to the caller's client)."""
    check_display(hv, name)
    return socket.socket(fileno=vms.get(hv, name).open_display())


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _send_all(stream: Any, data: bytes) -> None:
    while data:
        n = stream.send(data)
        if n == -2:
            continue
        data = data[n:]
