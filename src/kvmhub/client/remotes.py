"""Remote servers the CLI knows by name: URL, token and pinned certificate fingerprint.

Kept in ``/etc/kvmhub/remotes.json`` for root, else ``~/.config/kvmhub/remotes.json``; mode 0600 (it holds tokens).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kvmhub.client.transport import Transport, cert_fingerprint
from kvmhub.errors import Conflict, HostProblem, NotFound
from kvmhub.validate import check_name


# a dataclass, not a model: `kvmhub ls` through a remote reads this before anything else and must start fast
@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    token: str | None = None
    fingerprint: str | None = None  # SHA-256 of the server's certificate (https), pinned at add

    def transport(self) -> Transport:
        return Transport(self.url, token=self.token, fingerprint=self.fingerprint)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Remote:
        """A remote as the config file holds it (ValueError naming what is wrong)."""
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or not {"name", "url"} <= raw.keys() <= known:
            raise ValueError(f"a remote must be an object with name, url and optionally token, fingerprint: {raw!r}")
        if not all(isinstance(raw[k], str) or (raw[k] is None and k in ("token", "fingerprint")) for k in raw):
            raise ValueError(f"a remote's fields are text: {raw!r}")
        return cls(**raw)


def config_path() -> Path:
    if env := os.environ.get("KVMHUB_REMOTES"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/kvmhub/remotes.json")
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kvmhub" / "remotes.json"


def load() -> dict[str, Remote]:
    path = config_path()
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("it is not a JSON object of remotes by name")
        return {name: Remote.from_json(r) for name, r in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise HostProblem(f"cannot read {path}: {exc}", hint=f"fix or remove {path}") from None


def _save(remotes: dict[str, Remote]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({n: r.to_json() for n, r in sorted(remotes.items())}, fh, indent=2)
    os.replace(tmp, path)


def server_fingerprint(url: str, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate the https server at ``url`` presents now."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 443), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            return cert_fingerprint(tls.getpeercert(binary_form=True) or b"")
    except OSError as exc:
        raise HostProblem(f"cannot reach {url}: {exc}", hint="check the address and that `kvmhub serve` runs there "
                          "with --listen") from None


def add(name: str, url: str, token: str | None, fingerprint: str | None = None) -> Remote:
    """Remember a server: its certificate is pinned now (or as given) and the token checked against it."""
    check_name(name, "remote")
    remotes = load()
    if name in remotes:
        raise Conflict(f"a remote named {name!r} exists", hint=f"remove it first: {{cmd:remote rm {name}}}",
                       code="name.taken")
    Transport(url)  # refuses a URL of another kind
    if urlsplit(url).scheme == "https" and fingerprint is None:
        fingerprint = server_fingerprint(url)
    remote = Remote(name=name, url=url, token=token, fingerprint=fingerprint)
    remote.transport().request("GET", "/session")  # a wrong token or pin fails here, not later
    remotes[name] = remote
    _save(remotes)
    return remote


def remove(name: str) -> None:
    remotes = load()
    if remotes.pop(name, None) is None:
        raise NotFound(f"no remote named {name!r}", hint="list them: {cmd:remote ls}")
    _save(remotes)


def resolve(spec: str) -> Remote:
    """A remote by name, or an ad-hoc one from a URL (``unix:/path``, ``https://...``)."""
    if ":" in spec:
        return Remote(name=spec, url=spec)
    remotes = load()
    if spec not in remotes:
        raise NotFound(f"no remote named {spec!r}", hint="add it: {cmd:remote add NAME URL --token T}")
    return remotes[spec]
