"""Whether an operation's kvmhub process died before it finished (:mod:`kvmhub.services.repair` undoes it).

Light on imports: the CLI asks before every command.
"""

from __future__ import annotations

from kvmhub.ops.liveness import orphaned
from kvmhub.ops.location import db_file


def interrupted() -> bool:
    """True when the journal holds an operation still marked active whose process is gone."""
    return orphaned(db_file())
