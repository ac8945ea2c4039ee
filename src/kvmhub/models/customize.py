"""Wire types of offline image and disk editing (``image customize``, ``disk edit``): what to change inside a
guest's file systems while nothing runs it, and what was changed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kvmhub.models.documents import TextDocument

USER_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}$"
GUEST_PATH_PATTERN = r"^/[^\x00]*$"
HOSTNAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserPassword(_Model):
    """A user's new password; stored in the guest only as a SHA-512 crypt hash, never shown back."""

    user: str = Field(pattern=USER_PATTERN)
    password: str = Field(min_length=1, max_length=1024, repr=False)


class UserKey(_Model):
    """An SSH public key appended to a user's ``~/.ssh/authorized_keys``."""

    user: str = Field(pattern=USER_PATTERN)
    key: TextDocument


class GuestFile(_Model):
    """A file written inside the guest: absolute ``path``, its whole ``text``, and optionally its ``mode``."""

    path: str = Field(min_length=2, max_length=4096, pattern=GUEST_PATH_PATTERN)
    text: str
    mode: int | None = Field(default=None, ge=0, le=0o7777)


class CustomizeRequest(_Model):
    """Edits made in one pass, in this order: ``sysprep``, ``hostname``, ``passwords``, ``ssh_keys``, ``files``,
    ``run``, ``firstboot``. Either all of them reach the disk or none does."""

    sysprep: bool = Field(default=False, description="reset machine-id, SSH host keys, logs, cloud-init state, "
                                                     "DHCP leases and shell history")
    hostname: str | None = Field(default=None, max_length=253, pattern=HOSTNAME_PATTERN)
    passwords: list[UserPassword] = Field(default_factory=list, max_length=64)
    ssh_keys: list[UserKey] = Field(default_factory=list, max_length=64)
    files: list[GuestFile] = Field(default_factory=list, max_length=256)
    run: list[str] = Field(default_factory=list, max_length=64, description="shell commands run inside the "
                                                                           "image, without network")
    firstboot: list[TextDocument] = Field(default_factory=list, max_length=64,
                                          description="scripts run once, at the guest's next boot")

    @model_validator(mode="after")
    def _something(self) -> CustomizeRequest:
        if not (self.sysprep or self.hostname or self.passwords or self.ssh_keys or self.files or self.run
                or self.firstboot):
            raise ValueError("no edit given: give at least one of sysprep, hostname, passwords, ssh_keys, files, "
                             "run, firstboot")
        if any(not c.strip() for c in self.run):
            raise ValueError("run: an empty command")
        return self


class DiskEditRequest(CustomizeRequest):
    """A :class:`CustomizeRequest` for one disk of a shut-off VM (``disk``: its target, default the first disk)."""

    disk: str | None = Field(default=None, pattern=r"^[a-z]{2,4}[a-z0-9]{0,8}$")


class CustomizeResult(_Model):
    """What an edit did: the image or ``VM/disk`` it changed, what it found in it, and each change made."""

    target: str
    found: str = Field(description="the operating system found, or which file system was taken as the root")
    changes: list[str]
    seconds: float
    launch_seconds: float = Field(description="of which starting libguestfs's appliance took")
