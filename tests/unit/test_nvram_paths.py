"""Which NVRAM file a clone names: its own, even when the source's file is not copied."""

from __future__ import annotations

from kvmhub.services.nvram import clone_path
from kvmhub.xml._util import parse

NEW = "/var/lib/libvirt/qemu/nvram/copy_VARS.fd"
UEFI = """<domain type='kvm'><name>src</name><memory>262144</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/src_VARS.fd</nvram></os>
</domain>"""


def test_a_clone_names_its_own_nvram_even_when_there_is_no_file_to_copy() -> None:
    # the source never started (no file yet) or is remote: the clone must still not share the source's file
    assert clone_path(parse(UEFI, "domain"), "copy") == NEW
    assert clone_path(parse("<domain type='kvm'><name>bios</name><os><type>hvm</type></os></domain>", "domain"),
                      "copy") is None
