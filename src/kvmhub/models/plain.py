"""Plain values the models share with code that must not load pydantic (`kvmhub ls`'s fast path): a VM's phases
and the default project."""

from __future__ import annotations

import enum

DEFAULT_PROJECT = "default"
"""The project that always exists and owns every VM whose metadata names none."""


class Phase(enum.StrEnum):
    """How far a VM has come; each phase implies the ones before it."""

    DEFINED = "defined"
    RUNNING = "running"
    BOOTED = "booted"
    NETWORK = "network"
    READY = "ready"


PHASE_ORDER: list[Phase] = [Phase.DEFINED, Phase.RUNNING, Phase.BOOTED, Phase.NETWORK, Phase.READY]
