"""The light check the CLI makes before every command: is an operation's process gone?"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from kvmhub.models.operation import ACTIVE_STATES, Recovery
from kvmhub.ops import liveness
from kvmhub.ops.journal import Journal


def test_the_light_check_knows_the_journal_s_active_states() -> None:
    assert set(liveness.ACTIVE) == {str(s) for s in ACTIVE_STATES}


def test_no_journal_or_an_empty_one_has_no_orphans(tmp_path: Path) -> None:
    assert not liveness.orphaned(tmp_path / "none.db")
    sqlite3.connect(tmp_path / "empty.db").close()
    assert not liveness.orphaned(tmp_path / "empty.db")


def test_an_operation_whose_process_died_is_found_and_a_live_one_is_not(tmp_path: Path) -> None:
    db = tmp_path / "kvmhub.db"
    journal = Journal(db)
    mine = "op-1"
    journal.begin(mine, "vm.create", "a", "test:///default", "", None, Recovery.UNDO, [])
    assert not liveness.orphaned(db)  # this process runs
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    journal.db.execute("UPDATE operations SET pid=? WHERE id=?", (int(dead.stdout), mine))
    journal.db.commit()
    assert liveness.orphaned(db) == bool(journal.orphans()) is True
    assert liveness.alive(os.getpid(), liveness.process_start(os.getpid()))
