"""The host admin's kvmhub settings: ``/etc/kvmhub/kvmhub.toml`` (``$KVMHUB_CONFIG`` names another file).

::

    [shares]
    roots = ["/srv/shares", "/home"]    # host directories VMs may be given (and what lies below them)

A missing file means every setting's default: no share roots, so no host directory may be shared.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kvmhub.errors import HostProblem

DEFAULT_PATH = Path("/etc/kvmhub/kvmhub.toml")
ENV = "KVMHUB_CONFIG"


@dataclass(frozen=True)
class Config:
    """What the admin set; ``path`` is the file it came from (named in refusals, so the fix is findable)."""

    path: Path
    share_roots: list[str] = field(default_factory=list)


def config_path() -> Path:
    """The file the settings are read from."""
    return Path(env) if (env := os.environ.get(ENV)) else DEFAULT_PATH


def load() -> Config:
    """The settings as the file has them now (read on every call: an admin's edit needs no restart).

    Raises HostProblem when the file cannot be read or holds something other than the keys above.
    """
    path = config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config(path)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HostProblem(f"cannot read kvmhub's settings in {path}", cause=str(exc),
                          hint=f"fix or remove {path}") from exc
    shares = data.get("shares", {})
    roots = shares.get("roots", []) if isinstance(shares, dict) else None
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise HostProblem(f"cannot read kvmhub's settings in {path}",
                          cause="shares.roots is not a list of directory paths",
                          hint=f'write it as: [shares] roots = ["/srv/shares"] in {path}')
    return Config(path, share_roots=list(roots))
