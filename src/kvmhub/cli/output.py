"""How the CLI prints: tables and phases for people, JSON for scripts, errors with cause and fix.

Both consoles read no Rich markup or emoji codes: names, paths and messages are user text and print as given. Styled
output is built from :class:`rich.text.Text` parts, never by formatting user text into markup.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from kvmhub.cli.table import table as table  # commands print tables through this module
from kvmhub.errors import KvmhubError, report_lines

out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def print_json(data: Any) -> None:
    """Models and lists of models as indented JSON on stdout."""
    from pydantic import BaseModel

    def plain(x: Any) -> Any:
        if isinstance(x, BaseModel):
            return x.model_dump(mode="json")
        if isinstance(x, list):
            return [plain(i) for i in x]
        return x

    sys.stdout.write(json.dumps(plain(data), indent=2) + "\n")


def field_lines(key: str, value: object, width: int = 12) -> list[str]:
    """`key: value`, right-aligned keys; a list one item per line under the first, an empty one or None as -."""
    items = [str(v) for v in value] if isinstance(value, list | tuple) else ["-" if value is None else str(value)]
    first, *rest = items or ["-"]
    return [f"{key:>{width}}: {first}", *(f"{'':>{width}}  {item}" for item in rest)]


def field(key: str, value: object, width: int = 12) -> None:
    """Print one `key: value` entry (see :func:`field_lines`)."""
    for line in field_lines(key, value, width):
        out.print(line, markup=False)


def fields(model: Any, width: int = 12) -> None:
    """A model as `key: value` lines: *_bytes as sizes (key without the suffix), lists one item a line, None as -."""
    from kvmhub.validate import format_size

    for key, value in model.model_dump().items():
        if key.endswith("_bytes") and isinstance(value, int):
            value = format_size(value)
        field(key.removesuffix("_bytes"), value, width)


def say(msg: str) -> None:
    """One progress or warning line on stderr, printed as given."""
    err.print(msg, markup=False)


def error(exc: KvmhubError) -> None:
    """An error as the CLI shows it: message, then cause, fix and libvirt's own words when they add something."""
    first, *rest = report_lines(exc)
    err.print(Text.assemble(("error:", "bold red"), first.removeprefix("error:")))
    for line in rest:
        err.print(line, markup=False)
