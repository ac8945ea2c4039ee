"""What a kvmhub server is started with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kvmhub.hv.connection import DEFAULT_TIMEOUT, resolve_uri

DEFAULT_SOCKET = Path("/run/kvmhub/kvmhub.sock")
MAX_BODY_BYTES = 1 << 20  # request bodies are settings and small documents; images travel as uploads


@dataclass
class ServerSettings:
    uri: str = ""  # the libvirt URI the server manages ($KVMHUB_URI, else qemu:///system)
    socket: Path | None = DEFAULT_SOCKET  # the unix socket; None when only TCP is served
    listen: str | None = None  # ADDR:PORT for TCP (TLS unless insecure_http)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False
    libvirt_timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.uri = resolve_uri(self.uri or None)
