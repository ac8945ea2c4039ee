"""Telling a URL from a path, without loading the HTTP machinery that fetches one."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def is_url(src: str) -> bool:
    """True when `src` names a URL (any scheme) rather than a local path."""
    return bool(_SCHEME.match(src)) and "://" in src
