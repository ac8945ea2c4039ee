"""Padded text tables: no Rich, so the fastest commands can print them too."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: the fast `ls` loads neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Sequence


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Padded columns, bold header on a terminal (plain text: hundreds of rows print in no time)."""
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    header = line(columns)
    if sys.stdout.isatty():
        header = f"\033[1m{header}\033[0m"
    sys.stdout.write("\n".join([header, *(line(r) for r in cells)]) + "\n")
