"""Wire types for shared folders: a host directory a VM sees through virtiofs or 9p (``share add|ls|rm``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ShareMode = Literal["virtiofs", "9p"]
# what both virtiofs (36 bytes) and 9p (31 bytes) accept as a mount tag, and safe as a guest directory name
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShareSpec(_Model):
    """A VM's shared folder: the host directory ``source`` (a path on the VM's host), seen in the guest under
    the mount tag ``tag``."""

    tag: str = Field(pattern=TAG_PATTERN)
    source: str
    mode: ShareMode = "virtiofs"
    readonly: bool = False


class ShareInfo(ShareSpec):
    """A share as `share ls` shows it: ``attached`` when the running VM has it now (False when it takes effect
    at the next start, or the VM is shut off)."""

    attached: bool = False


class ShareAddRequest(_Model):
    """`share add`: share ``source``, a directory on the VM's host under a root the host's admin allows, as
    ``tag`` (default: from the directory's name). A running guest gets it mounted at ``/mnt/TAG`` through its
    agent when the share can be plugged in live."""

    source: str
    tag: str | None = Field(default=None, pattern=TAG_PATTERN)
    mode: ShareMode = "virtiofs"
    readonly: bool = False


class ShareChange(_Model):
    """What `share add` or `share rm` did. ``live``: applied to the running VM now; ``restart``: the VM must be
    stopped and started for the change to take effect (``reason`` says why); ``mounted``: where the guest has it
    mounted (None when it was not mounted, ``note`` says why)."""

    share: ShareSpec
    live: bool
    restart: bool = False
    reason: str | None = None
    mounted: str | None = None
    note: str | None = None
