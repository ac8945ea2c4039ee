"""Checks on user input, run before anything on the host is touched."""

from __future__ import annotations

import re

from kvmhub.errors import InvalidInput
from kvmhub.units import format_size as format_size  # kept here for its many callers

NAME_MAX = 63
MAX_VCPUS = 512  # the most vCPUs kvmhub lets a VM have (QEMU q35/pc accept more; hosts rarely do)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
NAME_RULE = (
    f"1 to {NAME_MAX} characters: letters, digits, '.', '_' and '-', starting with a letter or digit"
)

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def check_name(name: str, kind: str = "VM") -> str:
    """Return `name` if it is a valid kvmhub name, else raise InvalidInput saying the rule."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise InvalidInput(
            f"invalid {kind} name {name!r}",
            cause=f"a {kind} name is {NAME_RULE}",
            hint="pick a name like `web-1` or `db.lab`",
            code="input.invalid_name",
        )
    return name


def parse_size(text: str | int, *, what: str = "size", default_unit: str = "") -> int:
    """Parse '10G', '512M', '1.5GiB', '2048' (bytes, or `default_unit`) into bytes.

    Binary units for single letters (G = GiB) as qemu-img and virsh read them; 'GB' is 10^9.
    """
    if isinstance(text, int):
        value_bytes = text
    else:
        m = _SIZE_RE.match(text)
        if not m:
            raise InvalidInput(
                f"invalid {what} {text!r}",
                cause="a size is a number with an optional unit (K, M, G, T; KiB/MiB/GiB; KB/MB/GB)",
                hint="for example 512M or 10G",
                code="input.invalid_size",
            )
        number, unit = m.group(1), (m.group(2) or default_unit).lower()
        if unit not in _UNITS:
            raise InvalidInput(
                f"invalid {what} {text!r}: unknown unit {m.group(2)!r}",
                cause="known units: K, M, G, T (binary), KiB/MiB/GiB/TiB, KB/MB/GB/TB",
                hint="for example 512M or 10G",
                code="input.invalid_size",
            )
        value_bytes = int(float(number) * _UNITS[unit])
    if value_bytes <= 0:
        raise InvalidInput(f"invalid {what} {text!r}: must be greater than zero", code="input.invalid_size")
    return value_bytes


def parse_cpuset(text: str, host_cpus: int, *, what: str = "cpuset") -> set[int]:
    """Parse a cpuset such as '0-2,5' into CPU numbers, each checked against the host's 0 .. host_cpus-1."""
    cpus: set[int] = set()
    valid = f"host CPUs 0 to {host_cpus - 1}" if host_cpus > 1 else "host CPU 0"
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise InvalidInput(f"invalid {what} {text!r}", cause="a cpuset is CPU numbers and ranges, e.g. 0-2,5",
                               hint=f"valid: {valid}")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise InvalidInput(f"invalid {what} {text!r}: range {part} runs backwards")
        if last >= host_cpus:
            raise InvalidInput(f"{what} {text} is out of range: the host has no CPU {last}", cause=f"valid: {valid}")
        cpus.update(range(first, last + 1))
    return cpus
