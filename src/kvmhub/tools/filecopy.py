"""Copying a file in the kernel (copy_file_range, else sendfile), with progress and a clear no-space error."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from kvmhub.errors import HostProblem, OperationFailed

PIECE = 64 * 1024 * 1024


def copy_file(src: Path | int, dst: Path, progress: Callable[[int, int], None] | None = None, *, what: str,
              hint: str = "free space there and try again", label: str | None = None) -> None:
    """Copy src over dst (an existing file, e.g. a volume libvirt just made), reporting (bytes done, total).

    `src` is a path or a descriptor already open for reading (read by offset: its own offset does not
    move, and it stays open). ``what`` names where dst lives, for the no-space error; ``label`` names src
    in errors. Raises HostProblem when the disk fills up, OperationFailed for other I/O errors.
    """
    if isinstance(src, int):
        _copy(src, dst, progress, what=what, hint=hint, label=label or f"descriptor {src}")
        return
    with open(src, "rb") as fin:
        _copy(fin.fileno(), dst, progress, what=what, hint=hint, label=label or str(src))


def _copy(fin_fd: int, dst: Path, progress: Callable[[int, int], None] | None, *, what: str, hint: str,
          label: str) -> None:
    length = os.fstat(fin_fd).st_size
    with open(dst, "r+b") as fout:
        fout_fd = fout.fileno()
        done = 0
        use_range = True
        try:
            while done < length:
                if use_range:
                    try:
                        n = os.copy_file_range(fin_fd, fout_fd, min(PIECE, length - done), done, done)
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                            raise
                        use_range = False
                        continue
                else:
                    os.lseek(fout_fd, done, os.SEEK_SET)
                    n = os.sendfile(fout_fd, fin_fd, done, min(PIECE, length - done))
                if n == 0:
                    raise OSError(errno.EIO, f"{label} ended after {done} of {length} bytes")
                done += n
                if progress:
                    progress(done, length)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HostProblem(f"no space left in {what}", cause=str(exc),
                                  hint=hint, original=str(exc)) from None
            raise OperationFailed(f"copying {label} into {what} failed: {exc}", cause=exc.strerror or str(exc),
                                  hint=f"check that {label} is readable and {what} is writable, then try again",
                                  original=str(exc)) from None
        os.ftruncate(fout_fd, length)
