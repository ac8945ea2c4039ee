"""The CLI builds only the command a command line names, and behaves exactly as with every command built."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kvmhub.cli.main import app, only_named

URI = "test:///default"


def invoke(args: list[str], *, prune: bool) -> tuple[int, str]:
    if prune:
        with only_named(args):
            result = CliRunner().invoke(app, args)
    else:
        result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.parametrize("args", [
    ["--local", "--connect", URI, "ls", "--json"],
    ["--connect", URI, "--timeout", "5", "--local", "show", "test", "--json"],
    ["--local", "-c", URI, "show", "no-such-vm"],
    ["snapshot", "--help"],
    ["--help"],
    ["snapshto", "ls"],
    ["--local", "-c", URI, "snapshot", "ls", "test", "--bogus"],
    ["--local", "-c", URI, "image", "ls", "--json"],
], ids=["ls", "options-first", "not-found", "group-help", "help", "typo", "bad-option", "group-command"])
def test_a_command_line_gives_the_same_output_and_exit_code_as_with_every_command_built(args: list[str]) -> None:
    assert invoke(args, prune=True) == invoke(args, prune=False)


def test_the_app_holds_every_command_again_after_the_command() -> None:
    before = (list(app.registered_groups), list(app.registered_commands))
    with only_named(["snapshot", "ls", "test"]):
        assert [g.name for g in app.registered_groups] == ["snapshot"]
        assert app.registered_commands == []
    assert (app.registered_groups, app.registered_commands) == before
    with only_named(["--local", "--remote", "ls", "start", "x"]):  # "ls" is --remote's value here
        assert [c.callback.__name__ for c in app.registered_commands if c.callback] == ["start"]
    assert (app.registered_groups, app.registered_commands) == before
