"""Test support: private libvirt test hosts (see :mod:`kvmhub.testing.testhost`)."""

from kvmhub.testing.switch import TestSwitch
from kvmhub.testing.testhost import TestHost, cleanup_stale, missing_requirements

__all__ = ["TestHost", "TestSwitch", "cleanup_stale", "missing_requirements"]
