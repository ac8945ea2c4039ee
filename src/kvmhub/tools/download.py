"""Image sources read as streams: a local file or an http(s) URL, hashed and decompressed on the way in.

:func:`fetch` turns a source into a local file holding the image, opened once (the file itself when it is
local, not compressed and only writable by this user or root, else a private copy or a sparse temporary
file in the caller's work directory), with the SHA-256 of the bytes as published and, when asked, a
verified checksum. xz and gzip are recognised by their magic bytes.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import lzma
import os
import re
import stat
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from kvmhub.errors import HostProblem, InvalidInput, KvmhubError, NotFound, OperationFailed
from kvmhub.tools.filecopy import copy_file
from kvmhub.tools.urls import is_url

__all__ = ["CHUNK", "Checksum", "Fetched", "Progress", "compression_of", "fetch", "is_url", "open_url"]

CHUNK = 4 * 1024 * 1024
HTTP_TIMEOUT = 60.0
_SPARSE_BLOCK = 64 * 1024
_ZERO_BLOCK = bytes(_SPARSE_BLOCK)
_HEX = re.compile(r"^[0-9a-f]+$")
_DIGEST_LENGTH = {"sha256": 64, "sha512": 128}
_COMPRESSED = ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b", "gz"))
_UNSUPPORTED = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"PK\x03\x04", "zip"))
_SUFFIXES = {"xz": ".xz", "gz": ".gz"}

Progress = Callable[[str, int, int | None], None]
"""progress(phase, bytes done, bytes expected or None)"""


@dataclass(frozen=True)
class Checksum:
    """A checksum the user expects the source to have."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, algorithm: str, value: str) -> Checksum:
        """Validate a hex digest given on the command line (an ``ALGO:`` prefix is allowed)."""
        digest = value.strip().lower().removeprefix(f"{algorithm}:")
        want = _DIGEST_LENGTH.get(algorithm)
        if want is None:
            raise InvalidInput(f"unknown checksum type {algorithm!r}", hint="use {opt:sha256} or {opt:sha512}")
        if len(digest) != want or not _HEX.match(digest):
            raise InvalidInput(
                f"invalid {algorithm} checksum {value!r}",
                cause=f"a {algorithm} checksum is {want} hexadecimal digits",
                hint=f"copy it from the publisher's {algorithm.upper()}SUMS file",
            )
        return cls(algorithm, digest)


@dataclass
class Fetched:
    """A source made local and opened once: `fd` holds the image, decompressed; close it when done.

    Every later step (header sniffing, ``qemu-img info``, hashing, copying, converting) reads `fd`, so
    the file checked is the file stored even if `path` is replaced meanwhile. `path` names it in messages.
    """

    path: Path
    fd: int
    source: str
    name: str
    size: int
    compression: str | None
    temporary: bool
    _sha256: str | None = None
    _hasher: threading.Thread | None = field(default=None, repr=False)
    _hash_error: BaseException | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def sha256(self) -> str:
        """The SHA-256 of the source as published (waits for a hash still running in the background)."""
        if self._hasher is not None:
            self._hasher.join()
            self._hasher = None
        if self._hash_error is not None:
            raise _read_error(self.source, self._hash_error)
        assert self._sha256 is not None
        return self._sha256

    def close(self) -> None:
        """Stop a background hash and close the file."""
        self._stop.set()
        if self._hasher is not None:
            self._hasher.join()
            self._hasher = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Fetched:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_url(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput(
            f"cannot import from {url!r}: {scheme}: URLs are not supported",
            cause="kvmhub downloads images over http and https only",
            hint="give a local path for a file on this machine, or an http(s):// URL",
        )
    if not urlsplit(url).hostname:
        raise InvalidInput(f"{url!r} names no host", hint="for example https://example.org/disk.qcow2")
    return url


def compression_of(head: bytes) -> str | None:
    """'xz' or 'gz' when `head` starts with that compressor's magic; refuses compressors kvmhub cannot read."""
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            return kind
    for magic, kind in _UNSUPPORTED:
        if head.startswith(magic):
            raise InvalidInput(
                f"the source is {kind}-compressed, which kvmhub does not decompress",
                hint="decompress it first, or publish it as .xz or .gz",
            )
    return None


class _Decoder(Protocol):
    def feed(self, data: bytes) -> list[bytes]: ...
    def finish(self) -> None: ...


class _Xz:
    """xz (and any concatenated streams) decompressed in bounded pieces, so a bomb cannot fill memory."""

    def __init__(self) -> None:
        self._d = lzma.LZMADecompressor()

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        while True:
            if self._d.eof:
                rest = self._d.unused_data + data
                if not rest.strip(b"\0"):  # stream padding
                    return out
                self._d, data = lzma.LZMADecompressor(), rest
            piece = self._d.decompress(data, CHUNK)
            data = b""
            if piece:
                out.append(piece)
            if self._d.needs_input and not self._d.eof:
                return out

    def finish(self) -> None:
        if not self._d.eof:
            raise lzma.LZMAError("the xz stream ends early")


class _Gzip:
    """gzip (one or more members) decompressed in bounded pieces."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        while True:
            if self._d.eof:
                rest = self._d.unused_data + data
                if not rest:
                    return out
                self._d, data = zlib.decompressobj(16 + zlib.MAX_WBITS), rest
            piece = self._d.decompress(data, CHUNK)
            data = self._d.unconsumed_tail
            if piece:
                out.append(piece)
            if not data and not self._d.eof:
                return out

    def finish(self) -> None:
        if not self._d.eof:
            raise zlib.error("the gzip stream ends early")


class _Plain:
    def feed(self, data: bytes) -> list[bytes]:
        return [data]

    def finish(self) -> None:
        pass


def _decoder(kind: str | None) -> _Decoder:
    return _Xz() if kind == "xz" else _Gzip() if kind == "gz" else _Plain()


class _SparseWriter:
    """Writes a stream to a file, seeking over all-zero blocks so raw images stay sparse."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.offset = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        start = 0
        for pos in range(0, len(view), _SPARSE_BLOCK):
            block = view[pos:pos + _SPARSE_BLOCK]
            if len(block) == _SPARSE_BLOCK and block == _ZERO_BLOCK:
                if pos > start:
                    self._fh.write(view[start:pos])
                self._fh.seek(self.offset + pos + _SPARSE_BLOCK)
                start = pos + _SPARSE_BLOCK
        if start < len(view):
            self._fh.write(view[start:])
        self.offset += len(view)

    def close(self) -> None:
        self._fh.truncate(self.offset)


class _NoRedirectAway(urllib.request.HTTPRedirectHandler):
    """Follows redirects between http(s) URLs only (never to ftp: or file:)."""

    def redirect_request(self, req: urllib.request.Request, fp: BinaryIO, code: int, msg: str,  # type: ignore[override]
                         headers: object, newurl: str) -> urllib.request.Request | None:
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]


def open_url(url: str) -> tuple[BinaryIO, int | None]:
    """Open an http(s) URL for reading; the response and its Content-Length (None when not given)."""
    _check_url(url)
    opener = urllib.request.build_opener(_NoRedirectAway())
    headers = {"User-Agent": "kvmhub", "Accept-Encoding": "identity"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        resp = opener.open(request, timeout=HTTP_TIMEOUT)
    except urllib.error.HTTPError as exc:
        kind = NotFound if exc.code in (404, 410) else OperationFailed
        raise kind(
            f"downloading {url} failed: HTTP {exc.code} {exc.reason}",
            cause="the server refused the request" if exc.code < 500 else "the server failed",
            hint="check the URL in a browser or with `curl -I URL`",
        ) from None
    except urllib.error.URLError as exc:
        raise OperationFailed(
            f"cannot reach {url}: {exc.reason}",
            hint="check the address and that this machine can reach it (proxy settings: http(s)_proxy)",
        ) from None
    except (TimeoutError, OSError) as exc:
        raise OperationFailed(f"cannot reach {url}: {exc}", hint="check the address and the network") from None
    length = resp.headers.get("Content-Length")
    return resp, (int(length) if length and length.isdigit() else None)


def _read_error(source: str, exc: BaseException) -> KvmhubError:
    if isinstance(exc, KvmhubError):
        return exc
    return OperationFailed(f"reading {source} failed: {exc}", hint="check the source and try again")


def _no_space(where: Path, exc: OSError) -> HostProblem:
    return HostProblem(
        f"no space left in {where} for the image",
        cause="the decompressed or downloaded image does not fit in the temporary directory",
        hint="free space there, or point TMPDIR at a larger file system",
        original=str(exc),
        code="host.no_space",
    )


def _base_name(source: str) -> str:
    path = urlsplit(source).path if is_url(source) else source
    return Path(path).name or "image"


def _verify(expected: Checksum | None, got: dict[str, str], source: str) -> None:
    if expected is None:
        return
    actual = got[expected.algorithm]
    if actual != expected.hexdigest:
        raise InvalidInput(
            f"checksum mismatch for {source}",
            cause=f"expected {expected.algorithm} {expected.hexdigest}, got {actual}",
            hint="the download is corrupt or not the file you meant; nothing was imported",
        )


def fetch(src: str, workdir: Path, *, expected: Checksum | None = None, progress: Progress | None = None) -> Fetched:
    """Make `src` (a path or an http(s) URL) a local, decompressed file opened once, verified against `expected`.

    A local uncompressed file is read in place through one descriptor (copied into `workdir` first when
    someone other than this user or root could rewrite it); its SHA-256 is computed on a background thread
    unless a checksum must be verified first. Anything else is streamed into `workdir` (sparse). Raises
    InvalidInput (bad source, checksum mismatch), NotFound / OperationFailed (HTTP), HostProblem (no space).
    """
    if is_url(src):
        resp, length = open_url(src)
        with resp:
            return _stream(resp, length, src, workdir, expected, progress, "downloading")
    path = Path(src).expanduser().absolute()
    fd = _open_local(src, path)
    try:
        size = os.fstat(fd).st_size
        kind = compression_of(os.pread(fd, 8, 0))
        if kind is not None:
            with os.fdopen(os.dup(fd), "rb") as fh:
                return _stream(fh, size, str(path), workdir, expected, progress, f"decompressing ({kind})")
        if not _trusted(os.fstat(fd)):
            copy = _private_copy(fd, path, workdir, progress)
            os.close(fd)
            fd = copy
            size = os.fstat(fd).st_size
        if expected is not None:
            got = _hash(fd, size, progress, f"checking {expected.algorithm}", expected.algorithm)
            _verify(expected, got, str(path))
            fetched = Fetched(path, fd, str(path), path.name, size, None, False, _sha256=got["sha256"])
            fd = -1
            return fetched
        fetched = Fetched(path, fd, str(path), path.name, size, None, False)
        fd = -1
    finally:
        if fd >= 0:
            os.close(fd)

    def background() -> None:
        try:
            digest = _hash(fetched.fd, size, None, "", "sha256", stop=fetched._stop)
            fetched._sha256 = digest["sha256"]
        except BaseException as exc:  # handed to whoever asks for the digest
            fetched._hash_error = exc

    fetched._hasher = threading.Thread(target=background, name="sha256", daemon=True)
    fetched._hasher.start()
    return fetched


_OTHER_ROOT = re.compile(r"^/proc/\d+/root/")


def _open_local(src: str, path: Path) -> int:
    """Open a local source once: symlinks the user gave are followed first, none planted after that."""
    try:
        # a file seen through another mount namespace's root (a test host's /proc/PID/root) is opened as given:
        # resolving would follow that root link to this namespace's own root
        real = path if _OTHER_ROOT.match(str(path)) else path.resolve(strict=True)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidInput(f"{src} is not a readable file", cause=exc.strerror or str(exc),
                           hint="give the path of an image file, or an http(s) URL") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput(f"{src} is not a readable file", cause="it is not a regular file",
                           hint="give the path of an image file, or an http(s) URL")
    return fd


def _trusted(st: os.stat_result) -> bool:
    """Whether only this user or root can rewrite the file (its bytes cannot change under the import)."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _private_copy(fd: int, path: Path, workdir: Path, progress: Progress | None) -> int:
    """Copy the open file into `workdir` and return the copy, opened for reading."""

    out_path = workdir / "source"
    try:
        out = os.open(out_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(out)
        copy_file(fd, out_path, (lambda done, total: progress("copying", done, total)) if progress else None,
                  what=str(workdir), hint="free space there, or point TMPDIR at a larger file system",
                  label=str(path))
        copy = os.open(out_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OperationFailed(f"copying {path} to {workdir} failed: {exc}", cause=exc.strerror or str(exc),
                              hint="check that TMPDIR is writable and has room for the image") from None
    return copy


def _hash(fd: int, size: int, progress: Progress | None, phase: str, algorithm: str, *,
          stop: threading.Event | None = None) -> dict[str, str]:
    hashers = {"sha256": hashlib.sha256()}
    if algorithm != "sha256":
        hashers[algorithm] = hashlib.new(algorithm)
    done = 0
    # read by offset: the descriptor's own offset is left for others reading the same file
    while chunk := os.pread(fd, CHUNK, done):
        if stop is not None and stop.is_set():
            raise OSError("stopped")
        for h in hashers.values():
            h.update(chunk)
        done += len(chunk)
        if progress:
            progress(phase, done, size)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _stream(src: BinaryIO, length: int | None, source: str, workdir: Path, expected: Checksum | None,
            progress: Progress | None, phase: str) -> Fetched:
    """Copy `src` into a sparse file in `workdir`, hashing what is read and decompressing by magic bytes."""
    hashers = {"sha256": hashlib.sha256()}
    if expected and expected.algorithm not in hashers:
        hashers[expected.algorithm] = hashlib.new(expected.algorithm)
    name = _base_name(source)
    out_path = workdir / "source"
    received = 0
    decoder: _Decoder | None = None
    kind: str | None = None
    try:
        with open(out_path, "wb") as out:
            writer = _SparseWriter(out)
            while True:
                try:
                    chunk = src.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise OperationFailed(f"reading {source} failed after {received} bytes: {exc!r}",
                                          hint="try again; check the network or the source") from None
                if not chunk:
                    break
                if decoder is None:
                    kind = compression_of(chunk[:8])
                    decoder = _decoder(kind)
                    if kind:
                        phase = phase if phase.startswith("decompressing") else f"{phase} ({kind})"
                for h in hashers.values():
                    h.update(chunk)
                received += len(chunk)
                for piece in decoder.feed(chunk):
                    writer.write(piece)
                if progress:
                    progress(phase, received, length)
            if length is not None and received != length:
                raise OperationFailed(
                    f"the download of {source} was cut short: {received} of {length} bytes",
                    cause="the connection closed before the whole file arrived",
                    hint="try again",
                )
            if decoder is not None:
                decoder.finish()
            writer.close()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(workdir, exc) from None
        raise OperationFailed(f"writing the image to {workdir} failed: {exc}", cause=exc.strerror or str(exc),
                              hint="check that TMPDIR is writable, or point it at another directory") from None
    except (lzma.LZMAError, zlib.error) as exc:
        raise InvalidInput(f"{source} is not a valid {kind} file: {exc}",
                           hint="download it again; check the file is not truncated") from None
    got = {algo: h.hexdigest() for algo, h in hashers.items()}
    _verify(expected, got, source)
    if kind:
        name = name.removesuffix(_SUFFIXES[kind])
    os.chmod(out_path, 0o600)
    fd = os.open(out_path, os.O_RDONLY | os.O_CLOEXEC)
    return Fetched(out_path, fd, source, name, received, kind, True, _sha256=got["sha256"])
