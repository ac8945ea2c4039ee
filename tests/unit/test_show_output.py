"""`kvmhub show` prints lists one item a line under their key, never as Python reprs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kvmhub.cli.output import field_lines

NODE = """<node>
  <domain type="test">
    <name>two-disks</name>
    <memory unit="MiB">256</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices>
      <disk type="file" device="disk"><source file="/guest/a.img"/><target dev="vda" bus="virtio"/></disk>
      <disk type="file" device="disk"><source file="/guest/b.img"/><target dev="vdb" bus="virtio"/></disk>
      <interface type="network"><mac address="52:54:00:00:00:01"/><source network="lab"/>
        <model type="virtio"/></interface>
      <interface type="network"><mac address="52:54:00:00:00:02"/><source network="other"/>
        <model type="e1000"/></interface>
    </devices>
  </domain>
</node>
"""


def test_field_lines() -> None:
    assert field_lines("disks", ["vda a", "vdb b"]) == ["       disks: vda a", "              vdb b"]
    assert field_lines("ips", []) == ["         ips: -"]
    assert field_lines("vnc", None) == ["         vnc: -"]
    assert field_lines("vcpus", 2) == ["       vcpus: 2"]


def test_show_prints_each_disk_and_nic_on_its_own_line(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    env.pop("KVMHUB_URI", None)
    done = subprocess.run([sys.executable, "-m", "kvmhub.cli.main", "--connect", f"test://{node}", "show", "two-disks"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("       disks: vda disk virtio /guest/a.img")
    assert lines[at + 1] == "              vdb disk virtio /guest/b.img"
    at = lines.index("        nics: lab 52:54:00:00:00:01 virtio")
    assert lines[at + 1] == "              other 52:54:00:00:00:02 e1000"
    assert "         ips: -" in lines
    assert not any(c in done.stdout for c in "[]'"), done.stdout
