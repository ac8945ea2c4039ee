"""Where kvmhub keeps its state on this machine: the journal database and the lock directory.

Both are private to the user running kvmhub (root: ``/var/lib/kvmhub`` and ``/run/kvmhub/locks``, mode 0700), so no
other local user can block a lock or point a file kvmhub writes somewhere else. ``$KVMHUB_STATE_DIR`` moves both
(test hosts give each host its own).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kvmhub.errors import HostProblem
from kvmhub.ops.location import DB_NAME as DB_NAME
from kvmhub.ops.location import db_file, state_dir_text


def db_path() -> Path:
    """The journal's database file."""
    return Path(db_file())


def state_dir() -> Path:
    """The directory holding ``kvmhub.db``."""
    return Path(state_dir_text())


def locks_dir() -> Path:
    """The directory holding the per-resource lock files."""
    if env := os.environ.get("KVMHUB_STATE_DIR"):
        return Path(env) / "locks"
    if os.geteuid() == 0:
        return Path("/run/kvmhub/locks")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "kvmhub" / "locks" if runtime else state_dir() / "locks"


def private_dir(path: Path) -> Path:
    """Make ``path`` (and parents) if missing; refuse it unless it is a real directory only its owner can use."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise HostProblem(f"{path} is not a directory", cause="something else took kvmhub's state path",
                          hint=f"move it away: mv {path} {path}.old")
    if st.st_uid != os.geteuid():
        raise HostProblem(f"{path} belongs to uid {st.st_uid}, not to the user running kvmhub",
                          cause="another user made kvmhub's state directory",
                          hint=f"remove it (rm -r {path}) so kvmhub makes its own")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
