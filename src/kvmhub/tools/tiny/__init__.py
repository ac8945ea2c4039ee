"""The kvmhub tiny appliance: a small bootable guest image built offline from Debian packages."""

from kvmhub.tools.tiny.build import MARKERS, build_probe_initramfs, build_tiny_image

__all__ = ["MARKERS", "build_probe_initramfs", "build_tiny_image"]
