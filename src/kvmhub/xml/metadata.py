"""kvmhub's own facts about a VM, as an element in the domain's ``<metadata>``.

The element lives in kvmhub's namespace so other tools' metadata sits beside it untouched::

    <kvmhub:vm xmlns:kvmhub="https://kvmhub.dev/xmlns/1">
      <kvmhub:image>debian-12</kvmhub:image>
      <kvmhub:owner>alice</kvmhub:owner>
      <kvmhub:project>web</kvmhub:project>
      <kvmhub:stack>shop</kvmhub:stack>
      <kvmhub:created>2024-05-01T12:00:00Z</kvmhub:created>
      <kvmhub:tag>prod</kvmhub:tag>                           (any number)
      <kvmhub:owned-volume>default/web-1.qcow2</kvmhub:owned-volume>   (any number)
      <kvmhub:forward host-port="8080" guest-port="80" proto="tcp"/>    (any number; host-ip optional)
      <kvmhub:install-boot>cdrom</kvmhub:install-boot>        (kernel or cdrom: until the first start)
    </kvmhub:vm>

Unset fields are left out; unknown children are ignored so older kvmhub versions read newer metadata.

libvirt's ``setMetadata``/``metadata`` calls take and return the same element *without* a namespace
(``<vm><image>..</image></vm>``); libvirt binds it to :data:`KVMHUB_NS` with prefix :data:`KVMHUB_PREFIX`
itself, and refuses an element that already declares that prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from lxml import etree

from kvmhub import models  # its models load on first use: reading a VM's project needs none (`kvmhub ls`)
from kvmhub.errors import InvalidInput
from kvmhub.xml._util import Element, parse, serialize, sub, text_of

if TYPE_CHECKING:
    from kvmhub.models import KvmhubMeta, PortForward

KVMHUB_NS = "https://kvmhub.dev/xmlns/1"
"""The namespace URI: the ``uri`` argument of libvirt's ``setMetadata``/``metadata``."""
KVMHUB_PREFIX = "kvmhub"
"""The namespace prefix: the ``key`` argument of libvirt's ``setMetadata``."""

ROOT_TAG = f"{{{KVMHUB_NS}}}vm"


def build_metadata(meta: KvmhubMeta, *, namespaced: bool = True) -> Element:
    """The ``<kvmhub:vm>`` element for ``meta``.

    ``namespaced=False`` gives the bare ``<vm>`` that libvirt's ``setMetadata`` takes.
    """

    def q(local: str) -> str:
        return f"{{{KVMHUB_NS}}}{local}" if namespaced else local

    root = etree.Element(q("vm"), nsmap={KVMHUB_PREFIX: KVMHUB_NS} if namespaced else None)
    singles = (
        ("image", meta.image),
        ("owner", meta.owner),
        ("project", meta.project),
        ("stack", meta.stack),
        ("created", meta.created),
        ("os", meta.os),
        ("install-boot", meta.install_boot),
        ("user", meta.user),
    )
    for local, value in singles:
        if value is not None:
            sub(root, q(local), text=value)
    for tag in meta.tags:
        sub(root, q("tag"), text=tag)
    for volume in meta.owned_volumes:
        sub(root, q("owned-volume"), text=volume)
    for secret in meta.owned_secrets:
        sub(root, q("owned-secret"), text=secret)
    for path in meta.owned_files:
        sub(root, q("owned-file"), text=path)
    for fwd in meta.forwards:
        sub(root, q("forward"), {"host-port": str(fwd.host_port), "guest-port": str(fwd.guest_port),
                                 "proto": fwd.proto, "host-ip": fwd.host_ip})
    return root


def _check_root(root: Element) -> etree.QName:
    qname = etree.QName(root)
    if qname.localname != "vm" or qname.namespace not in (KVMHUB_NS, None):
        raise InvalidInput(
            "cannot read kvmhub metadata",
            cause=f"expected a <vm> element in {KVMHUB_NS}, found {root.tag}",
        )
    return qname


def project_from_xml(xml: str | None) -> str:
    """The project a VM's metadata (as ``virDomain.metadata(...)`` returns it; None: it has none) names,
    ``default`` when it names none or cannot be read (the VM is then treated as one kvmhub did not make)."""
    if not xml:
        return models.DEFAULT_PROJECT
    try:
        root = parse(xml, "kvmhub metadata")
        namespace = _check_root(root).namespace
    except InvalidInput:
        return models.DEFAULT_PROJECT
    for child in root.iterchildren(tag=etree.Element):
        cq = etree.QName(child)
        if cq.namespace == namespace and cq.localname == "project":
            return text_of(child) or models.DEFAULT_PROJECT
    return models.DEFAULT_PROJECT


def parse_metadata(root: Element) -> KvmhubMeta:
    """Read a ``<kvmhub:vm>`` element.

    Also accepts ``<vm>`` with no namespace, which is how libvirt's ``metadata()`` call hands it back.
    """
    qname = _check_root(root)
    singles: dict[str, str] = {}
    tags: list[str] = []
    owned: list[str] = []
    secrets: list[str] = []
    files: list[str] = []
    forwards: list[PortForward] = []
    for child in root.iterchildren(tag=etree.Element):
        cq = etree.QName(child)
        if cq.namespace != qname.namespace:
            continue
        if cq.localname == "tag":
            tags.append(text_of(child))
        elif cq.localname == "owned-volume":
            owned.append(text_of(child))
        elif cq.localname == "owned-secret":
            secrets.append(text_of(child))
        elif cq.localname == "owned-file":
            files.append(text_of(child))
        elif cq.localname == "forward":
            forwards.append(_parse_forward(child))
        elif cq.localname in ("image", "owner", "project", "stack", "created", "os", "install-boot", "user"):
            singles.setdefault(cq.localname, text_of(child))
    return models.KvmhubMeta(
        image=singles.get("image"),
        owner=singles.get("owner"),
        project=singles.get("project"),
        stack=singles.get("stack"),
        created=singles.get("created"),
        os=singles.get("os"),
        install_boot=_install_boot(singles.get("install-boot")),
        user=singles.get("user"),
        tags=tags,
        owned_volumes=owned,
        owned_secrets=secrets,
        owned_files=files,
        forwards=forwards,
    )


def _install_boot(text: str | None) -> Literal["kernel", "cdrom"] | None:
    # a kind this version does not know is ignored like an unknown element
    if text == "kernel":
        return "kernel"
    if text == "cdrom":
        return "cdrom"
    return None


def _parse_forward(el: Element) -> PortForward:
    try:
        return models.PortForward(
            host_port=int(el.get("host-port", "")),
            guest_port=int(el.get("guest-port", "")),
            proto=el.get("proto", "tcp"),  # type: ignore[arg-type]
            host_ip=el.get("host-ip"),
        )
    except ValueError as exc:  # pydantic's ValidationError is one
        raise InvalidInput("cannot read a port forward in kvmhub metadata", original=str(exc)) from exc


def metadata_to_xml(meta: KvmhubMeta) -> str:
    """The bare ``<vm>`` element for ``virDomain.setMetadata(VIR_DOMAIN_METADATA_ELEMENT, xml, key, uri)``.

    Pass :data:`KVMHUB_PREFIX` as the key and :data:`KVMHUB_NS` as the uri; libvirt adds the namespace.
    Raises InvalidInput if a value holds characters XML cannot carry.
    """
    return serialize(build_metadata(meta, namespaced=False))


def metadata_from_xml(xml: str) -> KvmhubMeta:
    """Read a ``<vm>`` element as ``virDomain.metadata(...)`` returns it (namespaced ``<kvmhub:vm>`` too).

    Raises InvalidInput if the text is not well-formed XML or is not kvmhub's element.
    """
    return parse_metadata(parse(xml, "kvmhub metadata"))
