"""`kvmhub snapshot revert|rm` of an internal snapshot answered before the full CLI loads: the same text and exit
code, against libvirt's test driver reading a node file with two snapshots (each process starts from the file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_cli_fast_local import HEAVY, entry, full, loaded

DOMAIN = "<domain type='test'><name>vm1</name><memory>65536</memory><os><type>hvm</type></os></domain>"
NODE = """<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>vm1</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    {snapshots}
  </domain>
</node>
"""
SNAPSHOT = """<test:domainsnapshot>
      <name>{name}</name>
      <state>running</state>
      {parent}
      <creationTime>{created}</creationTime>
      <memory snapshot='{memory}' {file}/>
      <disks/>
      <active>0</active>
      {domain}
    </test:domainsnapshot>"""


def node_uri(tmp_path: Path, *, external: bool = False) -> str:
    """A test-driver URI whose VM vm1 has snapshot s1 and its child s2 (s2 external when asked)."""
    snaps = [
        SNAPSHOT.format(name="s1", parent="", created=1700000000, memory="internal", file="", domain=DOMAIN),
        SNAPSHOT.format(name="s2", parent="<parent><name>s1</name></parent>", created=1700000100,
                        memory="external" if external else "internal",
                        file="file='/var/lib/s2.mem'" if external else "", domain=DOMAIN),
    ]
    path = tmp_path / "node.xml"
    path.write_text(NODE.format(snapshots="\n    ".join(snaps)))
    return f"test://{path}"


def said(result: tuple[int, str, str]) -> tuple[int, str, list[str]]:
    """Exit code, stdout, and stderr with elapsed times made equal and the usage lines (which name the module a
    command ran as) left out."""
    code, out, err = result
    lines = [re.sub(r"\(\d+\.\d s\)", "(T)", line) for line in err.splitlines()]
    return code, out, [line for line in lines if not line.startswith(("Usage:", "Try "))]


@pytest.mark.parametrize(("args", "code"), [
    (("revert", "vm1", "s1"), 0),
    (("revert", "--paused", "vm1", "s2"), 0),
    (("revert", "vm1", "s1", "--running"), 0),
    (("rm", "vm1", "s2"), 0),
    (("rm", "vm1", "s1", "--keep-children"), 0),
    (("rm", "vm1", "s1"), 4),
    (("rm", "vm1", "nosuch"), 3),
    (("revert", "novm", "s1"), 3),
    (("revert", "vm1", "bad/name"), 2),
    (("revert", "vm1", "s1", "--running", "--paused"), 2),
    (("rm", "vm1", "s1", "--children"), 0),
], ids=["revert", "paused", "running", "rm", "keep-children", "has-children", "no-snapshot", "no-vm", "bad-name",
        "contradiction", "children"])
def test_the_fast_command_says_what_the_full_cli_says(tmp_path: Path, args: tuple[str, ...], code: int) -> None:
    argv = ("-c", node_uri(tmp_path), "snapshot", *args)
    fast = said(entry(tmp_path, *argv))
    assert fast == said(full(tmp_path, *argv))
    assert fast[0] == code and fast[2], fast


def test_reverting_and_removing_load_none_of_the_full_cli(tmp_path: Path) -> None:
    uri = node_uri(tmp_path)
    assert loaded(tmp_path, HEAVY, "-c", uri, "snapshot", "revert", "vm1", "s2").strip().endswith("0 []")
    assert loaded(tmp_path, HEAVY, "-c", uri, "snapshot", "rm", "vm1", "s2").strip().endswith("0 []")


def test_an_external_snapshot_is_left_to_the_full_cli(tmp_path: Path) -> None:
    from kvmhub.cli import fast_snapshot

    uri = node_uri(tmp_path, external=True)
    assert fast_snapshot.run(["-c", uri, "snapshot", "revert", "vm1", "s2"]) is None
    assert fast_snapshot.run(["-c", uri, "snapshot", "rm", "vm1", "s2"]) is None
    assert fast_snapshot.run(["-c", uri, "snapshot", "rm", "vm1", "s1", "--keep-children"]) == 0  # internal
