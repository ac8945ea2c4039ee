"""kvmhub's errors.

Every failure kvmhub reports is a :class:`KvmhubError`. Each carries three parts a user needs:
what failed (the message), the likely ``cause``, and the ``hint`` (the fix, a command when there is
one); ``original`` keeps the underlying libvirt / qemu-img message.

The tree::

    KvmhubError                 exit 1   HTTP 500
     +-- InvalidInput           exit 2   HTTP 400   bad name, size, path, option
     +-- NotFound               exit 3   HTTP 404   no such VM, image, network, pool
     +-- Conflict               exit 4   HTTP 409   name taken, VM in the wrong state, image in use
     +-- HostProblem            exit 5   HTTP 503   libvirtd unreachable, virtlogd missing, KVM unusable,
     |                                              no space, permission denied
     +-- OperationTimeout       exit 6   HTTP 504   a libvirt call or a wait ran out of time
     +-- OperationFailed        exit 1   HTTP 500   anything else libvirt or a tool refused

:func:`exit_code` and :func:`http_status` are the only two maps from errors to the outside world.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "HostProblem",
    "InvalidInput",
    "KvmhubError",
    "NotFound",
    "OperationFailed",
    "OperationTimeout",
    "exit_code",
    "http_status",
]


class KvmhubError(Exception):
    """Root of every error kvmhub raises."""

    def __init__(
        self,
        message: str,
        *,
        cause: str | None = None,
        hint: str | None = None,
        original: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        self.hint = hint
        self.original = original

    def __str__(self) -> str:
        parts = [self.message]
        if self.cause:
            parts.append(f"cause: {self.cause}")
        if self.hint:
            parts.append(f"fix: {self.hint}")
        if self.original and self.original not in self.message:
            parts.append(f"libvirt said: {self.original}")
        return "\n".join(parts)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "cause": self.cause,
            "hint": self.hint,
            "original": self.original,
        }


class InvalidInput(KvmhubError):
    """The request itself is wrong: a name, size, path or option kvmhub refuses."""


class NotFound(KvmhubError):
    """The named object (VM, image, network, pool, volume, snapshot) does not exist."""


class Conflict(KvmhubError):
    """The request clashes with the current state: a taken name, a VM in the wrong phase."""


class HostProblem(KvmhubError):
    """The host cannot do it: daemons down, permissions, KVM unusable, disk full."""


class OperationTimeout(KvmhubError):
    """A libvirt call or a wait did not finish in time."""


class OperationFailed(KvmhubError):
    """libvirt, QEMU or a tool failed for a reason not covered by the other kinds."""


_EXIT_CODES: dict[type[KvmhubError], int] = {
    InvalidInput: 2,
    NotFound: 3,
    Conflict: 4,
    HostProblem: 5,
    OperationTimeout: 6,
}

_HTTP_STATUSES: dict[type[KvmhubError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    HostProblem: 503,
    OperationTimeout: 504,
}


def _lookup(table: dict[type[KvmhubError], int], err: KvmhubError, default: int) -> int:
    for klass in type(err).__mro__:
        if klass in table:
            return table[klass]
    return default


def exit_code(err: KvmhubError) -> int:
    """The CLI exit code for an error (README.md, "Exit codes": 1 failure .. 6 timeout; the tree above)."""
    return _lookup(_EXIT_CODES, err, 1)


def http_status(err: KvmhubError) -> int:
    """The HTTP status the API answers an error with."""
    return _lookup(_HTTP_STATUSES, err, 500)
