"""A Debian 12 cloud-style image (cloud-init, OpenSSH, qemu-guest-agent) built from Debian packages offline."""

from kvmhub.tools.distro.build import DEBIAN_USER, build_debian_image

__all__ = ["DEBIAN_USER", "build_debian_image"]
