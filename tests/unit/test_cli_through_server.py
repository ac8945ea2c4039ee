"""The CLI as a client of the server: the same output and exit codes as in library mode.

A server runs in this process (uvicorn on a temporary unix socket, over libvirt's test driver); each command runs
as its own process, once with ``--local`` (a fresh test driver, as the server's starts) and once through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_server import both, run, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address






def test_listing_and_showing_read_the_same(server: str) -> None:
    local, remote = both(server, "ls", "--json")
    assert local[0] == remote[0] == 0
    assert json.loads(local[1]) == json.loads(remote[1])
    local, remote = both(server, "show", "test", "--json")
    assert local[0] == remote[0] == 0 and json.loads(local[1]) == json.loads(remote[1])
    local, remote = both(server, "ls")
    assert local[1] == remote[1]


@pytest.mark.parametrize(("args", "code"), [(("show", "nope"), 3), (("show", "[bold]x"), 2), (("resume", "test"), 4),
                                             (("kill", "nope"), 3)])
def test_errors_exit_with_the_same_code_and_words(server: str, args: tuple[str, ...], code: int) -> None:
    local, remote = both(server, *args)
    assert local[0] == remote[0] == code, (local, remote)
    assert local[2].splitlines()[0] == remote[2].splitlines()[0]
    assert "kvmhub" in local[2] or code != 4 or "`kvmhub" in remote[2]  # hints name CLI commands either way


def test_state_changes_go_through_the_server_as_its_operations(server: str) -> None:
    code, _out, err = run("--remote", server, "pause", "test")
    assert code == 0 and "VM test paused" in err
    code, _out, err = run("--remote", server, "resume", "test")
    assert code == 0 and "VM test resumed" in err
    code, out, _err = run("--remote", server, "ops", "ls", "--json")
    ops = json.loads(out)
    assert [(o["kind"], o["state"], o["requested_by"]) for o in ops[:2]] == [
        ("vm.resume", "succeeded", "local"), ("vm.pause", "succeeded", "local")]
    code, out, _err = run("--remote", server, "ops", "show", ops[0]["id"], "--json")
    assert code == 0 and json.loads(out)["id"] == ops[0]["id"]


def test_a_named_remote(server: str) -> None:
    code, _out, err = run("remote", "add", "here", server)
    assert code == 0, err
    code, out, _err = run("remote", "ls", "--json")
    assert json.loads(out) == [{"name": "here", "url": server, "fingerprint": None, "token": False}]
    code, out, _err = run("--remote", "here", "ls", "--json")
    assert code == 0 and [v["name"] for v in json.loads(out)] == ["test"]
    assert run("remote", "add", "here", server)[0] == 4
    assert run("--remote", "elsewhere", "ls")[0] == 3
    assert run("remote", "rm", "here")[0] == 0


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    code, _out, err = run("--remote", f"unix:{tmp_path}/none.sock", "ls")
    assert code == 5 and "cannot reach the kvmhub server" in err and "--local" in err
