"""``<secret>``: libvirt secrets, here the passphrases of LUKS-encrypted disks."""

from __future__ import annotations

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import child_text, expect_root, make, parse, serialize, sub


def volume_secret_xml(usage: str, description: str | None = None, uuid: str | None = None) -> str:
    """XML for ``secretDefineXML``: a persistent, private secret of usage type ``volume``.

    ``usage`` identifies what the secret unlocks: an absolute path (libvirt's schema), unique among
    secrets, not necessarily an existing file. Private means libvirt never hands the value back through
    its API. ``uuid`` picks the secret's UUID (else libvirt does). Raises InvalidInput for a usage that is
    not an absolute path.
    """
    if not usage.startswith("/"):
        raise InvalidInput(f"volume secret usage {usage!r} is not an absolute path", hint="e.g. the volume's path")
    root = make("secret", {"ephemeral": "no", "private": "yes"})
    if uuid is not None:
        sub(root, "uuid", text=uuid)
    if description is not None:
        sub(root, "description", text=description)
    usage_el = sub(root, "usage", {"type": "volume"})
    sub(usage_el, "volume", text=usage)
    return serialize(root)


def secret_usage_from_xml(xml: str) -> str | None:
    """The usage string of a volume secret's XML (``virSecret.XMLDesc``); None for other usage types."""
    root = parse(xml, "secret")
    expect_root(root, "secret", "secret")
    usage = root.find("usage")
    if usage is None or usage.get("type") != "volume":
        return None
    return child_text(usage, "volume")
