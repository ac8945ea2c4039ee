"""`kvmhub project ...`: the same projects, output and exit codes in library mode and through the server; `ls`
names each VM's project once projects are in use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvmhub.cli.main import app
from kvmhub.errors import QuotaExceeded
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from tests.unit.cli_server import both, cli, run, serving

from .test_projects import vm_xml

URI = "test:///default"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address


def test_project_commands_read_and_write_the_same_projects_either_way(server: str) -> None:
    code, _out, err = run("--local", "project", "add", "web", "--max-vms", "2", "--max-memory", "1G")
    assert code == 0 and "project web added" in err
    local, remote = both(server, "project", "show", "web", "--json")
    assert local[0] == remote[0] == 0 and json.loads(local[1]) == json.loads(remote[1])
    shown = json.loads(remote[1])
    assert shown["quota"] == {"max_vms": 2, "max_cpus": None, "max_memory": 1024**3, "max_disk": None,
                              "max_networks": None}
    assert shown["use"]["vms"] == 0
    code, _out, err = run("--remote", server, "project", "set", "web", "--max-vms", "none", "--max-cpus", "8")
    assert code == 0 and "quotas of project web changed" in err
    local, remote = both(server, "project", "ls")
    assert local == remote and local[0] == 0
    assert local[1].splitlines()[0].split() == ["NAME", "VMS", "CPUS", "MEMORY", "DISK", "MEMBERS"]
    assert any(line.split()[:3] == ["web", "0/-", "0/8"] for line in local[1].splitlines())
    local, remote = both(server, "project", "show", "web")
    assert local == remote and "project web; members: -" in local[1]


@pytest.mark.parametrize(("args", "code", "words"), [
    (("project", "show", "nope"), 3, "no project named 'nope'"),
    (("project", "rm", "default"), 4, "the default project cannot be removed"),
    (("project", "member", "add", "default", "nobody"), 3, "no user named 'nobody'"),
    (("project", "set", "default", "--max-vms", "lots"), 2, "'lots' is not a whole number"),
    (("project", "set", "default"), 2, "nothing to set"),
])
def test_refusals_exit_with_the_same_code_and_words(server: str, args: tuple[str, ...], code: int,
                                                    words: str) -> None:
    local, remote = both(server, *args)
    assert local[0] == remote[0] == code, (local, remote)
    assert local[2].splitlines()[0] == remote[2].splitlines()[0]
    assert words in local[2]


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hypervisor]:
    """A connection kept open so the test driver keeps what the test defines while the CLI runs in-process."""
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    with Hypervisor(URI) as hv:
        yield hv




def test_ls_names_the_project_only_once_projects_are_in_use(held: Hypervisor) -> None:
    assert cli("ls").splitlines()[0].split() == ["NAME", "STATE", "PHASE", "CPUS", "MEMORY", "IP", "AUTOSTART"]
    assert [v["project"] for v in json.loads(cli("ls", "--json"))] == ["default"]
    cli("project", "add", "web")
    hv_domains.define(held, vm_xml("w1", "web"))
    lines = cli("ls").splitlines()
    assert lines[0].split() == ["NAME", "PROJECT", "STATE", "PHASE", "CPUS", "MEMORY", "IP", "AUTOSTART"]
    assert [line.split()[:2] for line in lines[1:]] == [["test", "default"], ["w1", "web"]]
    assert [(v["name"], v["project"]) for v in json.loads(cli("ls", "--json"))] == [("test", "default"),
                                                                                  ("w1", "web")]


def test_net_ls_names_the_project_only_once_a_network_belongs_to_another(held: Hypervisor) -> None:
    assert cli("net", "ls").splitlines()[0].split() == ["NAME", "STATE", "MODE", "SUBNET", "BRIDGE", "AUTOSTART",
                                                        "VMS"]
    assert [(n["name"], n["project"]) for n in json.loads(cli("net", "ls", "--json"))] == [("default", "default")]
    cli("project", "add", "web", "--max-networks", "1")
    try:
        assert "network lab1: isolated, 10.91.0.0/24" in cli("net", "create", "lab1", "--subnet", "10.91.0.0/24",
                                                            "--project", "web")
        lines = cli("net", "ls").splitlines()
        assert lines[0].split() == ["NAME", "PROJECT", "STATE", "MODE", "SUBNET", "BRIDGE", "AUTOSTART", "VMS"]
        assert sorted(line.split()[:2] for line in lines[1:]) == [["default", "default"], ["lab1", "web"]]
        assert sorted((n["name"], n["project"]) for n in json.loads(cli("net", "ls", "--json"))) == [
            ("default", "default"), ("lab1", "web")]
        refused = CliRunner().invoke(app, ["--local", "--connect", URI, "net", "create", "lab2", "--project", "web"])
        assert isinstance(refused.exception, QuotaExceeded)  # what the console script prints, exit 1
        assert refused.exception.message == ("project 'web' is over its networks quota: limit 1, in use 1, "
                                          "this request adds 1")
    finally:
        for net in held.conn.listAllNetworks(0):
            if net.name() != "default":
                net.destroy()
                net.undefine()
