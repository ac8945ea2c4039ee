"""What a kvmhub server is started with."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kvmhub.hv.connection import DEFAULT_TIMEOUT, resolve_uri

DEFAULT_SOCKET = Path("/run/kvmhub/kvmhub.sock")
SETTINGS_ENV = "KVMHUB_SERVE_SETTINGS"  # how `kvmhub serve` hands its settings to the server process
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

    def to_json(self) -> str:
        """These settings as JSON (how `kvmhub serve` hands them to the server's own process)."""
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        """Settings :meth:`to_json` wrote."""
        raw = json.loads(text)
        paths = {k: Path(raw[k]) if raw.get(k) is not None else None for k in ("socket", "tls_cert", "tls_key")}
        return cls(**{**raw, **paths})
