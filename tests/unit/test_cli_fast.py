"""`kvmhub ls` through a server answered before the full CLI loads: the same text, a fraction of the imports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kvmhub.cli.fast import parse_json
from tests.unit.cli_server import run, serving

HEAVY = ("typer", "rich", "pydantic", "libvirt", "http.client", "typing", "pathlib", "json", "re", "enum", "socket",
         "collections")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address


def full(*args: str) -> tuple[int, str, str]:
    """The command run by the full CLI, never the fast path."""
    env = {**os.environ, "KVMHUB_URI": "", "KVMHUB_REMOTE": "", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "kvmhub.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=90, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("args", [("ls",), ("ls", "--json")])
def test_the_fast_listing_prints_what_the_full_cli_prints(server: str, args: tuple[str, ...]) -> None:
    fast = run("--remote", server, *args)
    assert fast == full("--remote", server, *args)
    assert fast[0] == 0 and "test" in fast[1]


def test_the_fast_listing_also_reads_the_remote_from_the_environment(server: str) -> None:
    env = {**os.environ, "KVMHUB_URI": "", "KVMHUB_REMOTE": server}
    done = subprocess.run([sys.executable, "-m", "kvmhub.cli", "ls"], capture_output=True, text=True, env=env,
                          timeout=90, check=False)
    assert done.returncode == 0 and done.stdout == full("--remote", server, "ls")[1]


def test_the_fast_listing_loads_none_of_the_heavy_modules(server: str) -> None:
    probe = ("import sys; sys.argv = ['kvmhub', '--remote', sys.argv[1], 'ls']\n"
             "from kvmhub.cli import entry\n"
             "code = entry.answered(sys.argv[1:])\n"
             f"print(code, [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, server], capture_output=True, text=True, timeout=90,
                          check=False, env={**os.environ, "KVMHUB_REMOTE": ""})
    assert done.stderr.strip() == "0 []", done.stderr


@pytest.mark.parametrize("args", [("ls", "--bogus"), ("ls", "extra")])
def test_other_forms_are_left_to_the_full_cli(server: str, args: tuple[str, ...]) -> None:
    code, _out, err = run("--remote", server, *args)
    full_code, _, full_err = full("--remote", server, *args)
    assert code == full_code == 2
    assert err.splitlines()[2:] == full_err.splitlines()[2:]  # the usage lines name the module each ran as


def test_a_server_that_does_not_answer_is_reported_as_the_full_cli_reports_it(tmp_path: object) -> None:
    gone = f"unix:{tmp_path}/none.sock"
    code, out, err = run("--remote", gone, "ls")
    assert (code, out, err) == full("--remote", gone, "ls")
    assert code == 5 and "cannot reach the kvmhub server" in err


@pytest.mark.parametrize(("body", "expected"), [
    (b'[{"name":"a\\u00e9","ips":[],"memory_mib":1.5,"autostart":true,"x":null}]',
     [{"name": "a\u00e9", "ips": [], "memory_mib": 1.5, "autostart": True, "x": None}]),
    (b"[]", []),
])
def test_the_fast_reader_decodes_json_as_the_json_module_does(body: bytes, expected: object) -> None:
    assert parse_json(body) == expected


@pytest.mark.parametrize("body", [b" [1]", b"[1] x", b"[1", b"", b"\xff[]", b'["a\x01"]'])
def test_the_fast_reader_leaves_anything_but_one_whole_document_to_the_full_cli(body: bytes) -> None:
    assert parse_json(body) is None
