"""The rows of `kvmhub ls`, from VMs as plain dicts (a server's JSON or a model's dump): one place for both the
full command and its fast path."""

from __future__ import annotations

from kvmhub.units import format_size

TYPE_CHECKING = False  # not typing's: the fast `ls` loads neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

COLUMNS = ("NAME", "STATE", "PHASE", "CPUS", "MEMORY", "IP", "AUTOSTART")


def ls_table(vms: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[object]]]:
    """Columns and rows for ``vms``; a PROJECT column when any VM is outside the default project."""
    columns = list(COLUMNS)
    rows: list[list[object]] = [
        [v["name"], v["state"], str(v["phase"]), v["vcpus"], format_size(v["memory_mib"] * 1024**2),
         ", ".join(v["ips"]), "yes" if v["autostart"] else ""] for v in vms]
    if any(v["project"] != "default" for v in vms):  # projects are in use: say whose each VM is
        columns.insert(1, "PROJECT")
        for row, v in zip(rows, vms, strict=True):
            row.insert(1, v["project"])
    return columns, rows
