"""Single-use tokens for the graphical console: issued to one user for one VM, valid for a few seconds.

A browser's VNC client cannot send an ``Authorization`` header on its WebSocket, so the token in the URL is what
lets it in; it is kept only in this process's memory, and redeeming it (even a refused attempt) spends it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

TTL_S = 30.0


class TokenRefused(Exception):
    """A token that is unknown, spent, expired, or for another user or VM (the message says which)."""


@dataclass(frozen=True)
class Grant:
    """What a token allows: ``user`` may open the display of ``vm`` until ``expires`` (epoch seconds)."""

    token: str
    user: str
    vm: str
    expires: float


class ConsoleTokens:
    """The tokens issued and not yet spent; safe to use from any thread."""

    def __init__(self, ttl: float = TTL_S) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}

    def issue(self, user: str, vm: str) -> Grant:
        """A new token for ``user`` to open ``vm``'s display once within ``ttl`` seconds."""
        grant = Grant(secrets.token_urlsafe(24), user, vm, time.time() + self.ttl)
        with self._lock:
            now = time.time()
            self._grants = {t: g for t, g in self._grants.items() if g.expires > now}
            self._grants[grant.token] = grant
        return grant

    def redeem(self, token: str, *, vm: str | None = None, user: str | None = None) -> Grant:
        """Spend ``token``; its grant if it is valid, for ``vm`` and ``user`` when they are given.

        Raises TokenRefused naming why (unknown or spent, expired, another VM, another user).
        """
        with self._lock:
            grant = self._grants.pop(token, None)
        if grant is None:
            raise TokenRefused("console token unknown or already used: ask for a new one "
                               "(POST /api/v1/vms/{name}/vnc-token)")
        if grant.expires <= time.time():
            raise TokenRefused(f"console token expired (valid {self.ttl:.0f} s): ask for a new one and connect at once")
        if vm is not None and vm != grant.vm:
            raise TokenRefused(f"console token is for another VM, not {vm}")
        if user is not None and user != grant.user:
            raise TokenRefused(f"console token was issued to another user, not {user}")
        return grant
