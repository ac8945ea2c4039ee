"""``<pool>``: storage pools."""

from __future__ import annotations

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import child_text, expect_root, make, parse, serialize, sub


def dir_pool_xml(name: str, path: str) -> str:
    """XML for a directory pool holding its volumes as files under ``path`` (an absolute path).

    Raises InvalidInput for a relative path or characters XML cannot carry.
    """
    if not path.startswith("/"):
        raise InvalidInput(
            f"pool {name!r}: path {path!r} is not absolute", hint="give a path starting with /"
        )
    root = make("pool", {"type": "dir"})
    sub(root, "name", text=name)
    target = sub(root, "target")
    sub(target, "path", text=path)
    return serialize(root)


def pool_path_from_xml(xml: str) -> str | None:
    """The target directory (or device) path of a pool; None for pools without one (e.g. rbd)."""
    root = parse(xml, "pool")
    expect_root(root, "pool", "pool")
    return child_text(root, "target/path")
