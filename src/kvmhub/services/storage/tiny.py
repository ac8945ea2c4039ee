"""The tiny appliance image, built on this machine for ``kvmhub image build-tiny`` (see kvmhub.tools.tiny)."""

from __future__ import annotations

from kvmhub.tools.tiny.build import DEFAULT_CACHE_DIR, build_tiny_image

__all__ = ["DEFAULT_CACHE_DIR", "build_tiny_image"]
