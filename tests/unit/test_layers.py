"""The import graph of src/kvmhub keeps its layers: data flows down only, no package below the CLI has a cycle,
and below the CLI every import is at the top of its module.

Imports inside functions count like top-level ones (they run too, later); `if TYPE_CHECKING:` imports do not.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
ROOT = "kvmhub"

# Packages whose modules must not import each other in a circle.
ACYCLIC = ("kvmhub.services", "kvmhub.hv", "kvmhub.xml", "kvmhub.ops", "kvmhub.models", "kvmhub.tools",
           "kvmhub.server")

# package -> packages of kvmhub it must never import ("*" = anything of kvmhub outside itself).
FORBIDDEN = {
    "kvmhub.models": ("*",),
    "kvmhub.hv": ("kvmhub.services", "kvmhub.cli", "kvmhub.server"),
    "kvmhub.xml": ("kvmhub.hv", "kvmhub.services", "kvmhub.cli", "kvmhub.server"),
    "kvmhub.ops": ("kvmhub.services", "kvmhub.cli", "kvmhub.server"),
    "kvmhub.services": ("kvmhub.cli", "kvmhub.server"),
    "kvmhub.server": ("kvmhub.cli",),
}

# Where imports may stay inside functions: the CLI loads a command's code when the command runs (start-up
# speed), the test-host harness loads libvirt only when a host is used. ruff's PLC0415 ignores say the same.
LAZY_ALLOWED = ("kvmhub.cli", "kvmhub.testing")
LAZY_ALLOWED_PATHS = ("src/kvmhub/cli/**", "src/kvmhub/testing/**", "tests/**", "benchmarks/**")

# The one list of known exceptions, to be emptied as these modules are reworked (they were being changed on
# other branches when the rule came in): (importer, imported) -> why the import is still inside a function.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("kvmhub.server.serve", "kvmhub.server.tls"): "the certificate library costs a unix-socket-only server ~8 MiB",
    ("kvmhub.tools.guestfs_edit", "guestfs"): "libguestfs costs the server ~12 MiB it needs only while editing",
    ("kvmhub.services.owners", "kvmhub.xml.metadata"):
        "lxml (~7 ms) only when a VM's metadata must be read: `kvmhub ls` usually finds every owner on disk",
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # the kvmhub module loaded, or the name as written for anything outside kvmhub
    line: int
    in_function: bool
    internal: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of kvmhub that `name` (a module or a symbol in one) loads, or None outside kvmhub."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other, in_function)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inner)


def _imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node, in_function in _walk(tree, False):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is None:
                yield Import(module, target, node.lineno, in_function, internal=False)
            elif resolved != module:
                yield Import(module, resolved, node.lineno, in_function, internal=True)


@functools.cache
def all_imports() -> tuple[Import, ...]:
    """Every import statement's target in every kvmhub module."""
    modules = _modules()
    return tuple(imp for name, path in modules.items() for imp in _imports_of(name, path, modules))


def import_graph() -> list[Import]:
    """Every import of a kvmhub module by another kvmhub module."""
    return [imp for imp in all_imports() if imp.internal]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _checked(graph: list[Import]) -> list[Import]:
    return [imp for imp in graph if (imp.importer, imp.imported) not in KNOWN_EXCEPTIONS]


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycle_inside(package: str) -> None:
    edges: dict[str, set[str]] = {}
    for imp in _checked(import_graph()):
        if _in(imp.importer, package) and _in(imp.imported, package):
            edges.setdefault(imp.importer, set()).add(imp.imported)
    cycles = _cycles(edges)
    assert not cycles, "import cycles (each a set of modules that import each other): " + repr(cycles)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_below(package: str) -> None:
    banned = FORBIDDEN[package]
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in _checked(import_graph())
        if _in(imp.importer, package)
        and any((_in(imp.imported, b) if b != "*" else not _in(imp.imported, package)) for b in banned)
    ]
    assert not wrong, "\n".join(wrong)


def _lazy(imp: Import) -> bool:
    return imp.in_function and not any(_in(imp.importer, p) for p in LAZY_ALLOWED)


def test_no_import_inside_functions_below_cli() -> None:
    wrong = [f"{imp.importer}:{imp.line} imports {imp.imported} inside a function"
             for imp in all_imports() if _lazy(imp) and (imp.importer, imp.imported) not in KNOWN_EXCEPTIONS]
    assert not wrong, "\n".join(wrong)


def test_known_exceptions_are_still_needed() -> None:
    lazy = {(imp.importer, imp.imported) for imp in all_imports() if _lazy(imp)}
    assert sorted(set(KNOWN_EXCEPTIONS) - lazy) == []


def test_ruff_allows_function_imports_only_where_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "PLC0415" in config["select"]
    ignored = {path for path, rules in config["per-file-ignores"].items() if "PLC0415" in rules}
    modules = _modules()
    known = {str(modules[importer].relative_to(REPO)) for importer, _ in KNOWN_EXCEPTIONS}
    assert ignored == set(LAZY_ALLOWED_PATHS) | known


def test_the_checks_see_function_imports_and_cycles() -> None:
    lazy = [imp for imp in all_imports() if imp.in_function and _in(imp.importer, "kvmhub.cli")]
    assert any(imp.internal for imp in lazy) and any(not imp.internal for imp in lazy)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


# The CLI holds one client (the services in library mode, the server's API otherwise) and nothing below it.
BELOW_SERVICES = ("kvmhub.hv", "kvmhub.xml", "kvmhub.tools", "kvmhub.ops")
# (CLI module, module below the services) -> why it still imports it; each to be routed through the services
CLI_BELOW_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _every_import(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The kvmhub modules `module` imports anywhere, `if TYPE_CHECKING:` blocks included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if (resolved := _resolve(target, modules)) is not None:
                yield resolved


def _cli_below() -> set[tuple[str, str]]:
    modules = _modules()
    return {(name, imported) for name, path in modules.items() if _in(name, "kvmhub.cli")
            for imported in _every_import(name, path, modules) if any(_in(imported, b) for b in BELOW_SERVICES)}


def test_the_cli_imports_nothing_below_the_services() -> None:
    wrong = sorted(found for found in _cli_below() if found not in CLI_BELOW_EXCEPTIONS)
    assert not wrong, "CLI modules importing below the services (route them through kvmhub.services): " + repr(wrong)


def test_cli_exceptions_are_still_needed() -> None:
    assert sorted(set(CLI_BELOW_EXCEPTIONS) - _cli_below()) == []


def test_the_cli_rule_sees_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kvmhub.hv import Hypervisor\n")
    assert list(_every_import("kvmhub.cli.mod", source, _modules())) == ["kvmhub.hv"]
