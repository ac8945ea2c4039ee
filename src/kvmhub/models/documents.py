"""Wire types for what a request hands a service besides plain values: small documents as content, and
big media as a reference to something already on the kvmhub host."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

VOLUME_PATTERN = r"^[^/\s]+/[^/\s]+$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextDocument(_Model):
    """A small text document given by content (cloud-init user-data, an SSH public key file, a kickstart).

    ``name`` is what errors call it: the CLI sets it to the path of the file it read.
    """

    name: str = Field(min_length=1)
    text: str


class HostMedia(_Model):
    """Big media the kvmhub host reads (an installer ISO, a kernel): exactly one of

    * ``path``: a file on the kvmhub host itself (never a file of the caller's machine), or
    * ``volume``: ``POOL/VOL``, a libvirt volume, e.g. one uploaded with ``kvmhub vol upload``.
    """

    path: str | None = Field(default=None, min_length=1)
    volume: str | None = Field(default=None, pattern=VOLUME_PATTERN)

    @model_validator(mode="after")
    def _one_source(self) -> HostMedia:
        if (self.path is None) == (self.volume is None):
            raise ValueError("give exactly one of path or volume")
        return self

    def __str__(self) -> str:
        return self.path if self.path is not None else str(self.volume)
