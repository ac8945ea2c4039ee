"""Wire types for running commands in a guest and copying files to and from it (through its guest agent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kvmhub.models.guest_rules import (
    MAX_ARGS,
    MAX_ENV,
    MAX_STDIN,
    MAX_TIMEOUT,
    argv_problem,
    env_problem,
    stdin_problem,
)

__all__ = ["MAX_STDIN", "ExecRequest", "ExecResult", "GuestFileInfo"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecRequest(_Model):
    """A command to run in a guest: its argv, environment additions, stdin and how long it may take."""

    argv: list[str] = Field(min_length=1, max_length=MAX_ARGS, description="the program and its arguments")
    env: list[str] = Field(default_factory=list, max_length=MAX_ENV, description="KEY=VALUE pairs added to its "
                           "environment (PATH defaults to the usual directories)")
    stdin: str | None = Field(default=None, description="its standard input, base64 (at most 512 KiB once decoded)")
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT,
                                  description="seconds it may run before it is killed (default: no limit)")

    @field_validator("argv")
    @classmethod
    def _program(cls, argv: list[str]) -> list[str]:
        if problem := argv_problem(argv):
            raise ValueError(problem)
        return argv

    @field_validator("env")
    @classmethod
    def _pairs(cls, env: list[str]) -> list[str]:
        if problem := env_problem(env):
            raise ValueError(problem)
        return env

    @field_validator("stdin")
    @classmethod
    def _stdin(cls, stdin: str | None) -> str | None:
        if problem := stdin_problem(stdin):
            raise ValueError(problem)
        return stdin


class ExecResult(_Model):
    """How the command ended: its exit code (128+N when signal N killed it), and its output as base64 when the
    caller did not take it as it came."""

    exit_code: int
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""


class GuestFileInfo(_Model):
    """A file copied to or from a guest: its path there, its size and permission bits (when known)."""

    path: str
    size: int
    mode: int | None = None
    via: Literal["agent", "ssh"] | None = Field(
        default=None, description="how the bytes went: through the guest agent, or over SSH (big files, when the "
                                  "guest's address is on a network of the host and it takes kvmhub's key)")
