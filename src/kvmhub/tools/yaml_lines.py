"""YAML documents read with the line of every mapping key and sequence item, so errors can point at it.

:func:`load` parses one document with PyYAML's safe loader (what cloud-init uses too), refuses duplicate
keys (PyYAML would keep the last one silently) and returns :class:`Map` / :class:`Seq` containers that
remember where each entry was written. :func:`plain` turns them back into dicts and lists for dumping.
"""

from __future__ import annotations

from typing import Any

import yaml

from kvmhub.errors import InvalidInput

__all__ = ["Map", "Seq", "dump", "line_of", "load", "plain"]


class Map(dict[Any, Any]):
    """A YAML mapping; ``lines[key]`` is the 1-based line the key was written on."""

    line: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}


class Seq(list[Any]):
    """A YAML sequence; ``lines[i]`` is the 1-based line of item ``i``."""

    line: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


class _Duplicate(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    out = Map()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark
            ) from None
        if key in out:
            raise _Duplicate(
                None, None, f"key {key!r} appears twice (lines {out.lines[key]} and {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    out = Seq()
    out.line = node.start_mark.line + 1
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.lines.append(item.start_mark.line + 1)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load(text: str, what: str) -> Any:
    """Parse ``text`` (one YAML document); ``what`` names it in errors ("user-data /path/file").

    Raises InvalidInput naming the line and column of a syntax error or a duplicate key.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or "unreadable YAML"
        if exc.context:
            started = exc.context_mark
            at = f" (started at line {started.line + 1}, column {started.column + 1})" if started else ""
            problem = f"{exc.context}{at}: {problem}"
        raise InvalidInput(
            f"{what} is not valid YAML{where}",
            cause=problem,
            hint="fix the YAML at that line (a YAML linter shows the same position)",
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what} is not valid YAML", cause=str(exc)) from None


def line_of(container: Any, key: Any) -> int | None:
    """The line a key (of a Map) or an index (of a Seq) was written on, when known."""
    if isinstance(container, Map):
        return container.lines.get(key)
    if isinstance(container, Seq) and isinstance(key, int) and 0 <= key < len(container.lines):
        return container.lines[key]
    return None


def plain(value: Any) -> Any:
    """``value`` with every Map and Seq turned into a plain dict and list."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(value: Any) -> str:
    """Block-style YAML that keeps key order, never folds long lines (SSH keys stay on one line) and
    writes multi-line strings as literal blocks."""
    return yaml.dump(
        plain(value), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=2**31
    )
