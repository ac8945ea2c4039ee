"""Names of a package loaded from their modules on first use (PEP 562): the package's ``__getattr__`` and
``__dir__``. The models package uses it, and the XML package (which may import models, never the reverse)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def loader(package: str, where: dict[str, str], names: list[str]) -> tuple[Callable[[str], Any],
                                                                             Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each name to its module in the package,
    ``names`` is the package's ``__all__``."""

    def load(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # found as a plain attribute from now on
        return value

    def listing() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return load, listing
