"""Every action kind a service can journal has a handler once ``kvmhub.services.repair`` is loaded, so a later
kvmhub process can undo (or finish) any interrupted operation without having run the code that planned it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "src" / "kvmhub" / "services"


def _literal_kind(call: ast.Call) -> str | None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name != "Action" or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _constructors() -> dict[str, str]:
    """undo_actions.<function> -> the kind of the Action it returns."""
    tree = ast.parse((SERVICES / "undo_actions.py").read_text())
    out = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef):
            kinds = [k for node in ast.walk(fn) if isinstance(node, ast.Call) and (k := _literal_kind(node))]
            if kinds:
                out[fn.name] = kinds[0]
    return out


def journalled_kinds() -> dict[str, set[str]]:
    """Each action kind the services' source can journal -> the files that do."""
    made = _constructors()
    found: dict[str, set[str]] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            kind = _literal_kind(node)
            func = node.func
            if (kind is None and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id == "undo_actions"):
                kind = made.get(func.attr)
            if kind is not None:
                found.setdefault(kind, set()).add(str(path.relative_to(SERVICES)))
    return found


def test_the_scan_sees_what_services_journal() -> None:
    kinds = journalled_kinds()
    # one kind per way it is written: a constructor of undo_actions, a literal Action, one of another module
    assert {"volume.delete", "pool.undefine", "network.undefine", "forward.withdraw", "bases.release"} <= set(kinds)
    assert "storage/disks.py" in kinds["volume.delete"] or "storage/volumes.py" in kinds["volume.delete"]


def test_every_journalled_action_kind_has_a_handler_after_importing_repair() -> None:
    # a fresh interpreter: what other tests imported must not register handlers repair itself would miss
    probe = ("import json, sys, kvmhub.services.repair; from kvmhub.ops import actions; "
             "print(json.dumps([k for k in json.load(sys.stdin) if not actions.known(k)]))")
    kinds = journalled_kinds()
    out = subprocess.run([sys.executable, "-c", probe], input=json.dumps(sorted(kinds)), capture_output=True,
                         text=True, check=True).stdout
    missing = {kind: sorted(kinds[kind]) for kind in json.loads(out)}
    assert missing == {}, f"no handler registered by the modules repair imports for: {missing}"
