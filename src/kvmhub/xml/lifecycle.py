"""``<on_reboot>`` and the one-shot installer boot.

An unattended install boots the installer's kernel once. Its definition says ``<on_reboot>destroy``
next to ``<os><kernel>``, so the installer's closing reboot powers the VM off instead of starting the
installer again; once that run has started, the definition for later starts loses the kernel boot
and reboots normally (virt-install does the same around its install run).
"""

from __future__ import annotations

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import Element, child_text, expect_root, parse, serialize

_KERNEL_BOOT = ("kernel", "initrd", "cmdline")


def _domain(xml: str) -> Element:
    root = parse(xml, "domain")
    expect_root(root, "domain", "domain")
    return root


def _set_on_reboot(root: Element, action: str) -> None:
    el = root.find("on_reboot")
    if el is None:
        raise InvalidInput("cannot read the domain XML", cause="it has no <on_reboot>")
    el.text = action


def install_boot_xml(xml: str) -> str:
    """Domain XML with a kernel boot made one-shot: the guest's reboot powers the VM off."""
    root = _domain(xml)
    if root.find("os/kernel") is None:
        raise InvalidInput("cannot make a one-shot install boot", cause="the domain has no <os><kernel>")
    _set_on_reboot(root, "destroy")
    return serialize(root)


def is_install_boot(xml: str) -> bool:
    """Whether domain XML is a one-shot installer boot (kernel boot that ends at the guest's reboot)."""
    root = _domain(xml)
    return root.find("os/kernel") is not None and child_text(root, "on_reboot") == "destroy"


def after_install_xml(xml: str) -> str:
    """The definition for starts after the install run: no kernel boot, reboots restart, disks boot."""
    root = _domain(xml)
    os_el = root.find("os")
    if os_el is not None:
        for tag in _KERNEL_BOOT:
            for el in os_el.findall(tag):
                os_el.remove(el)
    _set_on_reboot(root, "restart")
    return serialize(root)
