"""Where the journal lives, as plain text paths (only ``os``: the CLI's fast path asks before every listing)."""

from __future__ import annotations

import os

DB_NAME = "kvmhub.db"


def state_dir_text() -> str:
    """The directory holding ``kvmhub.db``: ``$KVMHUB_STATE_DIR``, else root's ``/var/lib/kvmhub``, else the
    user's XDG state directory."""
    if env := os.environ.get("KVMHUB_STATE_DIR"):
        return env
    if os.geteuid() == 0:
        return "/var/lib/kvmhub"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "kvmhub")


def db_file() -> str:
    """The journal's database file."""
    return os.path.join(state_dir_text(), DB_NAME)
