"""Helpers shared by the XML modules: a safe parser, serialisation, element building, unit arithmetic."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lxml import etree

from kvmhub.errors import InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

Element = etree._Element

# libvirt's scaled-integer units (docs: formatdomain.html#memory-allocation), in bytes.
_UNITS: dict[str, int] = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "p": 1024**5,
    "pib": 1024**5,
    "eb": 1000**6,
    "e": 1024**6,
    "eib": 1024**6,
}


def parse(xml: str | bytes, what: str) -> Element:
    """Parse an XML document without entity expansion or network access; raise InvalidInput if malformed."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    # A fresh parser per call: lxml parser objects must not be shared between threads.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(
            f"cannot read the {what} XML",
            cause="the XML is not well-formed",
            original=str(exc),
        ) from exc


def expect_root(root: Element, tag: str, what: str) -> None:
    """Raise InvalidInput unless the document element is ``tag``."""
    if root.tag != tag:
        raise InvalidInput(
            f"cannot read the {what} XML",
            cause=f"the document element is <{root.tag}>, not <{tag}>",
        )


def serialize(root: Element) -> str:
    """Indented text of an element tree, ending in a newline."""
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def make(tag: str, attrib: Mapping[str, str | None] | None = None, text: str | None = None) -> Element:
    """A new element; attributes whose value is None are left out."""
    el = etree.Element(tag)
    _fill(el, tag, attrib, text)
    return el


def sub(
    parent: Element, tag: str, attrib: Mapping[str, str | None] | None = None, text: str | None = None
) -> Element:
    """A new child of ``parent``; attributes whose value is None are left out."""
    el = etree.SubElement(parent, tag)
    _fill(el, tag, attrib, text)
    return el


def _fill(el: Element, tag: str, attrib: Mapping[str, str | None] | None, text: str | None) -> None:
    name: str = ""
    value: str | None = None
    try:
        for name, value in (attrib or {}).items():
            if value is not None:
                el.set(name, value)
        name, value = "text", text
        if text is not None:
            el.text = text
    except ValueError as exc:
        # lxml refuses NUL and control characters; say which field carried them.
        raise InvalidInput(
            f"<{tag}> {name} {value!r} cannot be written to XML",
            cause="it holds characters XML 1.0 cannot carry (NUL or control characters)",
            hint="remove the control characters from the value",
            original=str(exc),
        ) from exc


def with_uuid(xml: str, what: str, uuid: str) -> str:
    """``xml`` (a pool, network ... definition) with ``<uuid>`` set to ``uuid``, right after ``<name>``."""
    root = parse(xml, what)
    for old in root.findall("uuid"):
        root.remove(old)
    name = root.find("name")
    el = make("uuid", text=uuid)
    if name is not None:
        name.addnext(el)
    else:
        root.insert(0, el)
    return serialize(root)


def text_of(el: Element) -> str:
    """An element's text; an empty element reads as the empty string."""
    return el.text or ""


def child_text(parent: Element, path: str) -> str | None:
    """Text of the first element at ``path``; None when there is none."""
    el = parent.find(path)
    return None if el is None else text_of(el)


def to_int(value: str | None, where: str) -> int:
    """An integer read from XML, or InvalidInput naming where it came from."""
    try:
        return int((value or "").strip())
    except ValueError as exc:
        raise InvalidInput(f"cannot read {where}", cause=f"{value!r} is not an integer") from exc


def scaled_bytes(el: Element, where: str, default_unit: str) -> int:
    """Bytes in a libvirt scaled integer such as ``<memory unit='KiB'>524288</memory>``."""
    unit = el.get("unit") or default_unit
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise InvalidInput(f"cannot read {where}", cause=f"unknown unit {unit!r}")
    return to_int(el.text, where) * factor


def choices(model: type[BaseModel], field: str) -> frozenset[str]:
    """The strings a Literal-typed field (or optional/list of one) accepts; parsers follow the models."""
    found: set[str] = set()

    def walk(tp: object) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Literal:
            found.update(arg for arg in typing.get_args(tp) if isinstance(arg, str))
        elif origin in (typing.Union, types.UnionType, list):
            for arg in typing.get_args(tp):
                walk(arg)

    walk(model.model_fields[field].annotation)
    return frozenset(found)
