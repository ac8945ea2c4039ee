"""`kvmhub top --once` and `kvmhub ls` in library mode answered before the full CLI loads: the same text and exit
code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

URI = "test:///default"
HEAVY = ("typer", "rich", "pydantic", "kvmhub.cli.main", "kvmhub.server")


def env_of(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KVMHUB_URI": "", "KVMHUB_REMOTE": "", "COLUMNS": "200",
            "KVMHUB_STATE_DIR": str(tmp_path / "state")}


def entry(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """The console script (which answers the forms it knows before loading the full CLI)."""
    return run_module(tmp_path, "kvmhub.cli", *args)


def full(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """The command run by the full CLI, never the fast path."""
    return run_module(tmp_path, "kvmhub.cli.main", *args)


def run_module(tmp_path: Path, module: str, *args: str) -> tuple[int, str, str]:
    """``python -m module args...`` with no input (a pipe at its end, as from a script), against no server."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env_of(tmp_path), timeout=90, check=False, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("args", [
    ("--connect", URI, "top", "--once", "--json", "--interval", "0"),
    ("--local", "-c", URI, "--timeout=10", "top", "--once", "--interval=0", "--sort", "name", "--reverse"),
    ("-c", URI, "top", "--once", "--interval", "0"),
], ids=["json", "options", "table"])
def test_the_fast_sample_prints_what_the_full_cli_prints(tmp_path: Path, args: tuple[str, ...]) -> None:
    fast = entry(tmp_path, *args)
    assert fast == full(tmp_path, *args)
    assert fast[0] == 0 and "test" in fast[1]


@pytest.mark.parametrize("args", [
    ("--connect", URI, "ls"),
    ("--local", "-c", URI, "--timeout=10", "ls", "--json"),
], ids=["table", "json"])
def test_the_fast_listing_prints_what_the_full_cli_prints(tmp_path: Path, args: tuple[str, ...]) -> None:
    fast = entry(tmp_path, *args)
    assert fast == full(tmp_path, *args)
    assert fast[0] == 0 and "test" in fast[1] and "192.168.122.3" in fast[1]


def test_the_fast_listing_loads_none_of_the_full_cli(tmp_path: Path) -> None:
    said = loaded(tmp_path, HEAVY, "-c", URI, "ls", "--json")
    assert said.strip() == "0 []", said


def test_a_listing_row_as_json_is_the_models_dump() -> None:
    from kvmhub.models import Phase, VMInfo
    from kvmhub.services.vm.listing_rows import Row, as_json

    rows: list[Row] = [
        {"name": "a", "uuid": "u1", "state": "running", "phase": Phase.NETWORK, "persistent": True,
         "autostart": True, "vcpus": 2, "memory_mib": 512, "domain_type": "", "ips": ["10.0.0.2", "fd00::2"],
         "project": "web"},
        {"name": "b", "uuid": "u2", "state": "shut off", "phase": Phase.DEFINED, "persistent": False,
         "autostart": False, "vcpus": 0, "memory_mib": 0, "domain_type": "", "ips": [], "project": "default"},
    ]
    for row in rows:
        dumped = VMInfo(**row).model_dump(mode="json")
        assert as_json(row) == dumped and list(as_json(row)) == list(dumped)


def test_the_fast_sample_loads_none_of_the_full_cli(tmp_path: Path) -> None:
    said = loaded(tmp_path, HEAVY, "-c", URI, "top", "--once", "--json", "--interval", "0")
    assert said.strip() == "0 []", said


def loaded(tmp_path: Path, heavy: tuple[str, ...], *args: str) -> str:
    """The console script run with ``args`` in a process that then says (on stderr, after what the command said)
    its exit code and which of the ``heavy`` modules it loaded."""
    probe = (f"import sys; sys.argv = ['kvmhub', *{list(args)!r}]\nfrom kvmhub.cli import entry\n"
             "code = entry.answered(sys.argv[1:])\n"
             f"print(code, [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=90, check=False,
                          env=env_of(tmp_path), stdin=subprocess.DEVNULL)
    return done.stderr


@pytest.mark.parametrize("args", [
    ("-c", URI, "top", "--once", "--sort", "bogus"),
    ("-c", URI, "top", "--once", "--interval", "-1"),
    ("-c", URI, "top", "--once", "--bogus"),
    ("-c", URI, "top", "--once", "extra"),
    ("-c", "test:///nowhere/such", "top", "--once", "--interval", "0"),
    ("-c", URI, "ls", "--bogus"),
    ("-c", URI, "ls", "extra"),
    ("-c", "test:///nowhere/such", "ls"),
], ids=["sort", "interval", "option", "word", "uri", "ls-option", "ls-word", "ls-uri"])
def test_other_forms_and_errors_are_left_to_the_full_cli(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out, err = entry(tmp_path, *args)
    full_code, full_out, full_err = full(tmp_path, *args)
    assert code == full_code != 0
    assert out == full_out
    assert err.splitlines()[2:] == full_err.splitlines()[2:]  # the usage lines name the module each ran as


def test_a_usage_row_as_a_dict_has_every_field_in_order() -> None:
    from kvmhub.services.monitor.usage import Usage

    row = Usage(name="a", uuid="u", state="running", vcpus=2, cpu_percent=1.5, net_tx_bytes=7)
    as_dict = row.as_dict()
    assert list(as_dict) == list(Usage._fields)
    assert as_dict["name"] == "a" and as_dict["cpu_percent"] == 1.5 and as_dict["net_tx_bytes"] == 7
    assert as_dict["memory_mib"] is None and as_dict["disk_read_bps"] is None


def test_rows_are_indented_as_json_dumps_indents_them() -> None:
    import json

    from kvmhub.cli.fast_local import indented

    rows: list[dict[str, object]] = [
        {"name": 'we"ird\\ näme', "cpu": 12.5, "none": None, "n": 3, "nan": float("nan"), "inf": float("inf"),
         "yes": True},
        {"name": "b", "cpu": 1e-7},
        {},
    ]
    assert indented(rows) == json.dumps(rows, indent=2)
    assert indented([]) == json.dumps([], indent=2)
