"""Unit-test options and fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def regenerate_output(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files."""
    return bool(request.config.getoption("--regenerate-output", default=False))
