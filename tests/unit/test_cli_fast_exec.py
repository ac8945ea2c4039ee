"""`kvmhub exec` in library mode answered before the full CLI loads: the same words and exit code, and the forms
it does not know left to the full CLI. (The test driver's domain has no guest agent: a real command runs in the
integration tests, through this path.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmhub.cli.fast_exec import _parse
from tests.unit.test_cli_fast_local import loaded, run_module

URI = "test:///default"
HEAVY = ("typer", "pydantic", "kvmhub.cli.main", "kvmhub.server", "kvmhub.models.guest")


@pytest.mark.parametrize("args", [
    ("-c", URI, "exec", "test", "--", "true"),  # no agent channel
    ("--local", "--connect", URI, "--timeout=10", "exec", "-n", "--timeout", "5", "-e", "A=1", "--env=B=2",
     "nosuch", "--", "ls", "-l"),  # no such VM
    ("-c", URI, "exec", "test", "--", "sh", "-c", "exit 3"),
    ("-c", URI, "exec", "bad/name", "--", "true"),  # a name kvmhub refuses
    ("-c", URI, "exec", "-e", "1=2", "test", "--", "true"),  # left to the full CLI: a bad pair
    ("-c", URI, "exec", "--timeout", "0", "test", "--", "true"),  # left: a timeout it refuses
    ("-c", URI, "exec", "--bogus", "test", "--", "true"),  # left: an option it does not know
    ("-c", URI, "exec", "test", "true"),  # left: no --
], ids=["no-agent", "options", "script", "bad-name", "bad-env", "zero-timeout", "bogus", "no-dashes"])
def test_exec_says_what_the_full_cli_says(tmp_path: Path, args: tuple[str, ...]) -> None:
    fast = run_module(tmp_path, "kvmhub.cli", *args)
    code, out, err = run_module(tmp_path, "kvmhub.cli.main", *args)
    assert fast == (code, out, err.replace("kvmhub.cli.main", "kvmhub.cli"))  # usage lines name the module run
    assert fast[0] != 0 and fast[2]


def test_the_fast_exec_loads_none_of_the_full_cli(tmp_path: Path) -> None:
    said = loaded(tmp_path, HEAVY, "-c", URI, "exec", "-n", "test", "--", "true")
    assert said.strip().endswith("4 []"), said  # vm.no_agent is a conflict (4)
    assert "has no guest agent channel" in said


def test_only_the_plain_form_is_parsed() -> None:
    assert _parse(["-n", "vm", "--", "ls", "-l"]) == ({"--no-stdin": ""}, "vm", [], ["ls", "-l"])
    assert _parse(["vm", "-e", "A=1", "--timeout=3", "--", "x"]) == ({"--timeout": "3"}, "vm", ["A=1"], ["x"])
    assert _parse(["vm", "--"]) is None  # no command
    assert _parse(["vm", "x", "--", "y"]) is None  # a word beside the name
    assert _parse(["-n", "--no-stdin", "vm", "--", "x"]) is None  # said twice
    assert _parse(["--timeout", "1", "--timeout", "2", "vm", "--", "x"]) is None
    assert _parse(["--no-stdin=1", "vm", "--", "x"]) is None
    assert _parse(["vm", "--timeout"]) is None


def test_a_plain_command_is_held_to_the_requests_rules() -> None:
    from kvmhub.errors import InvalidInput
    from kvmhub.models.guest import ExecRequest
    from kvmhub.services.vm.guest_exec import PlainCommand

    for argv, env, timeout in ((["true"], ["A=1"], 5.0), ([""], [], None), (["x"], ["1=2"], None),
                               (["x"], [], 0.0), (["x"], [], 1e9), ([], [], None), (["a\0b"], [], None)):
        try:
            ExecRequest(argv=argv, env=env, timeout=timeout)
            model_ok = True
        except ValueError:
            model_ok = False
        try:
            PlainCommand(argv, env, None, timeout)
            plain_ok = True
        except InvalidInput:
            plain_ok = False
        assert plain_ok == model_ok, (argv, env, timeout)
