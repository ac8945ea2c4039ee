"""The Debian 12 cloud-style image, built here for ``kvmhub image build-debian`` (see kvmhub.tools.distro)."""

from __future__ import annotations

from kvmhub.tools.distro.build import DEFAULT_CACHE_DIR, OS_VARIANT, build_debian_image

__all__ = ["DEFAULT_CACHE_DIR", "OS_VARIANT", "build_debian_image"]
