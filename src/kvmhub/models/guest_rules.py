"""What a command run in a guest may be, as plain checks: :class:`kvmhub.models.guest.ExecRequest` validates with
them, and `kvmhub exec`'s fast path checks with them without building a model."""

from __future__ import annotations

import re

MAX_STDIN = 512 * 1024  # bytes of stdin an exec takes (as base64 it fits the API's 1 MiB body limit)
MAX_STDIN_B64 = (MAX_STDIN + 2) // 3 * 4
MAX_TIMEOUT = 86400.0
MAX_ARGS = 4096
MAX_ENV = 1024
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)


def argv_problem(argv: list[str]) -> str | None:
    """Why ``argv`` cannot be run (None when it can), past its length."""
    if not argv[0]:
        return "the program (argv[0]) is empty"
    if any("\0" in a for a in argv):
        return "an argument holds a NUL byte"
    return None


def env_problem(env: list[str]) -> str | None:
    for pair in env:
        if not _ENV.fullmatch(pair) or "\0" in pair:
            return f"{pair!r} is not KEY=VALUE (KEY: letters, digits, _; not starting with a digit)"
    return None


def stdin_problem(stdin_b64: str | None) -> str | None:
    if stdin_b64 is not None and len(stdin_b64) > MAX_STDIN_B64:
        return f"stdin is over {MAX_STDIN // 1024} KiB: copy bigger input into the guest first"
    return None


def command_problem(argv: list[str], env: list[str], timeout: float | None) -> str | None:
    """Why an ExecRequest of these would be refused (stdin aside), in a few words; None when it would not."""
    if not 0 < len(argv) <= MAX_ARGS:
        return f"argv: give the program and at most {MAX_ARGS - 1} arguments"
    if len(env) > MAX_ENV:
        return f"env: at most {MAX_ENV} pairs"
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
        return f"timeout: more than 0 and at most {MAX_TIMEOUT:g} s"
    if problem := argv_problem(argv):
        return f"argv: {problem}"
    if problem := env_problem(env):
        return f"env: {problem}"
    return None
