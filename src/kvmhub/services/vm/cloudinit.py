"""cloud-init seeds for new VMs: the NoCloud documents built from create's options and files.

:func:`seed_documents` reads and checks everything first (files readable, YAML valid with the line of
any error, keys that look like public keys, network-config well formed) and returns the four documents
of a NoCloud seed; nothing is written. What the options turn into, in cloud-init's own keys (as read by
cloud-init 22.x, the release in Debian 12 images):

* ``--ssh-key FILE``: each key appended to ``ssh_authorized_keys`` (the default user's keys);
* ``--password-file`` / ``--password``: stored only as a SHA-512 crypt hash, as ``password`` with
  ``chpasswd: {expire: false}``: the image's default user's password (set by the set-passwords module,
  which recognises a ``$6$`` hash). Root is left as the image has it (locked on cloud images); the tiny
  appliance, whose only user is root, gives root that password;
* ``--packages``: appended to ``packages``, with ``package_update: true``;
* ``--runcmd``: appended to ``runcmd``.

A ``#cloud-config`` user-data file is merged with these; a script (``#!``), MIME multipart, ``#include``
and the other user-data kinds are passed through untouched, and then options that would need merging
are refused with the reason.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import getpass
import ipaddress
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from passlib.hash import sha512_crypt

from kvmhub.errors import InvalidInput
from kvmhub.hv.networks import Network
from kvmhub.models.documents import TextDocument
from kvmhub.models.requests_vm import CloudInitRequest
from kvmhub.services.network import leases
from kvmhub.services.vm.network_config import parse_network_config
from kvmhub.tools import yaml_lines
from kvmhub.tools.yaml_lines import Map, Seq
from kvmhub.xml.network import network_subnet_from_xml

__all__ = [
    "CloudInitRequest",
    "SeedDocuments",
    "address_to_reserve",
    "hash_password",
    "password_option",
    "read_document",
    "read_ssh_keys",
    "seed_documents",
    "user_data_kind",
]

MAX_DOCUMENT_BYTES = 16 * 1024**2
MAX_PASSWORD_BYTES = 4096
_KEY_TYPES = ("ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-", "sk-ssh-ed25519@openssh.com",
              "sk-ecdsa-sha2-")  # fmt: skip
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:~=@/-]*$")

# The first line of a user-data document -> its kind (cloud-init's user-data formats).
_HEADERS = (
    ("#cloud-config-archive", "cloud-config archive"),
    ("#cloud-config-jsonp", "cloud-config JSON patch"),
    ("#cloud-config", "cloud-config"),
    ("## template: jinja", "jinja template"),
    ("#!", "script"),
    ("#include-once", "include list"),
    ("#include", "include list"),
    ("#cloud-boothook", "boothook"),
    ("#part-handler", "part handler"),
    ("#upstart-job", "upstart job"),
    ("content-type:", "MIME multipart"),
    ("mime-version:", "MIME multipart"),
)


@dataclass(frozen=True)
class SeedDocuments:
    """The NoCloud seed's files; ``static_ipv4`` lists the addresses network-config assigns, in order."""

    meta_data: str
    user_data: str
    network_config: str | None = None
    vendor_data: str | None = None
    static_ipv4: tuple[str, ...] = ()


def seed_documents(req: CloudInitRequest) -> SeedDocuments:
    """Read and check every input of ``req`` and return the seed's documents.

    Raises InvalidInput (naming the file, and the line for YAML) on the first problem; creates nothing.
    """
    keys = read_ssh_keys(req.ssh_keys)
    packages = _check_packages(req.packages)
    runcmd = _check_runcmd(req.runcmd)
    if req.password is not None and not req.password:
        raise InvalidInput("{opt:password} is empty", hint="give a password, or leave {opt:password} out")
    user_data = _user_data(req, keys, packages, runcmd)
    network = None
    if req.network_config is not None:
        network = parse_network_config(_text(req.network_config, "network-config"), req.network_config.name)
    vendor_data = None
    if req.vendor_data is not None:
        vendor_data = _text(req.vendor_data, "vendor-data")
        _check_document(vendor_data, f"vendor-data {req.vendor_data.name}")
    meta = yaml_lines.dump({"instance-id": req.instance_id, "local-hostname": req.hostname})
    return SeedDocuments(
        meta_data=meta,
        user_data=user_data,
        network_config=network.text if network else None,
        vendor_data=vendor_data,
        static_ipv4=network.static_ipv4 if network else (),
    )


def address_to_reserve(net: Network, ip: str | None, docs: SeedDocuments) -> str | None:
    """The address to reserve for the VM on ``net``: ``ip`` (--ip), else the first static IPv4 address
    the network-config gives inside the network's subnet; None to pick one from the DHCP range.

    The reservation keeps DHCP from handing a static address to another VM and points the VM's DNS
    name at it. Raises InvalidInput when --ip and the network-config disagree, Conflict when the
    address is taken.
    """

    subnet = network_subnet_from_xml(net.xml()) if docs.static_ipv4 else None
    static = next((a for a in docs.static_ipv4 if subnet and ipaddress.IPv4Address(a) in subnet), None)
    if ip is not None and static is not None and ip != static:
        raise InvalidInput(f"{{opt:ip}} {ip} differs from the static address {static} the network-config gives",
                           hint="drop {opt:ip} (kvmhub reserves the network-config's address), or make them agree")
    chosen = ip or static
    if chosen is not None:
        leases.check_ip(net, chosen)
    return chosen


def password_option(password: str | None, password_file: Path | None, warn: Callable[[str], None]) -> str | None:
    """The password create's ``--password-file`` or ``--password`` gives; None when neither is given.

    ``password_file`` is read up to the end of its first line ("-": standard input, not echoed on a
    terminal). ``--password`` still works, but ``warn`` is told that the command line shows the value to
    other users of the host. Raises InvalidInput when both are given or the file is unreadable or empty.
    """
    if password is not None and password_file is not None:
        raise InvalidInput("{opt:password} and {opt:password_file} are both given", cause="each sets the same password",
                           hint="keep {opt:password_file} and drop {opt:password}")
    if password_file is not None:
        return _read_password(password_file)
    if password is not None:
        warn("warning: --password puts the password on the command line, where other users of this host can "
             "read it (ps, /proc/PID/cmdline) and the shell history keeps it; use --password-file FILE, or "
             "--password-file - to read it from standard input")
    return password


def hash_password(password: str) -> str:
    """A SHA-512 crypt hash (``$6$...``) of ``password``, as chpasswd -e, shadow and busybox read it."""
    return str(sha512_crypt.hash(password))


def read_ssh_keys(documents: list[TextDocument]) -> list[str]:
    """The public keys in each document (comments and blank lines skipped); refuses private keys and junk."""
    keys: list[str] = []
    for doc in documents:
        path = doc.name
        text = _text(doc, "SSH key")
        if "PRIVATE KEY" in text:
            raise InvalidInput(f"{path} is a private key", cause="only the public half belongs in a VM",
                               hint=f"pass {path}.pub instead")
        found = 0
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            _check_key(path, number, line)
            if line not in keys:
                keys.append(line)
            found += 1
        if not found:
            raise InvalidInput(f"{path} holds no SSH public key", hint="pass a .pub file (ssh-keygen makes one)")
    return keys


def user_data_kind(text: str) -> str:
    """What cloud-init takes a user-data document for, from its first line ("cloud-config", "script"...);
    "empty" for an empty document, "unknown" when cloud-init would ignore it."""
    if not text.strip():
        return "empty"
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip()
    for prefix, kind in _HEADERS:
        # cloud-init matches the "#" headers exactly; MIME header names are case-insensitive
        if (first.lower() if prefix.endswith(":") else first).startswith(prefix):
            return kind
    return "unknown"


# --------------------------------------------------------------------------- reading and checking


def read_document(path: Path, what: str) -> TextDocument:
    """Read the ``what`` file ``path`` (e.g. "user-data") as a document named after the path.

    Raises InvalidInput naming the file when it cannot be read, is over 16 MiB, gzip-compressed or not UTF-8.
    """
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"{what} file {path} is {size} bytes", cause="a seed document is at most 16 MiB",
                               hint="is this the right file?")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc.strerror}", hint="check the path") from None
    if data[:2] == b"\x1f\x8b":
        raise InvalidInput(f"{what} file {path} is gzip-compressed",
                           cause="kvmhub checks (and merges into) the document before writing it",
                           hint=f"decompress it first: gunzip -k {path}")
    try:
        return TextDocument(name=str(path), text=data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} file {path} is not UTF-8 text", cause=f"byte {exc.start} is not UTF-8",
                           hint="is this the right file?") from None


def _text(doc: TextDocument, what: str) -> str:
    size = len(doc.text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"{what} {doc.name} is {size} bytes", cause="a seed document is at most 16 MiB",
                           hint="is this the right document?")
    return doc.text


def _read_password(path: Path) -> str:
    where = "standard input" if str(path) == "-" else f"password file {path}"
    try:
        if str(path) != "-":
            with path.open("rb") as fh:
                data = fh.readline(MAX_PASSWORD_BYTES + 2)
        elif sys.stdin.isatty():
            data = getpass.getpass("password: ").encode()
        else:
            data = sys.stdin.buffer.readline(MAX_PASSWORD_BYTES + 2)
    except OSError as exc:
        raise InvalidInput(f"cannot read {where}: {exc.strerror}", hint="check the path") from None
    line = data.removesuffix(b"\n").removesuffix(b"\r")
    if not line:
        raise InvalidInput(f"{where} holds no password", cause="its first line is empty",
                           hint="put the password on the first line")
    if len(line) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"the first line of {where} is over {MAX_PASSWORD_BYTES} bytes",
                           cause="the password is read from the first line only", hint="is this the right file?")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text", hint="is this the right file?") from None


def _check_key(path: str, number: int, line: str) -> None:
    fields = line.split()
    # An authorized_keys line may start with options (from="...",no-pty); the key type follows them.
    start = next((i for i, f in enumerate(fields) if f.startswith(_KEY_TYPES)), None)
    if start is None or start + 1 >= len(fields):
        raise InvalidInput(f"{path} line {number} does not look like an SSH public key",
                           cause="a key line reads: TYPE BASE64 [COMMENT], e.g. ssh-ed25519 AAAA... me@host",
                           hint="pass the .pub file")
    try:
        base64.b64decode(fields[start + 1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{path} line {number}: the key data is not base64",
                           hint="the key was cut or wrapped; copy the .pub file again") from None


def _check_packages(packages: list[str]) -> list[str]:
    for name in packages:
        if not _PACKAGE_RE.match(name):
            raise InvalidInput(f"{{opt:packages}}: {name!r} is not a package name",
                               hint="separate names with commas: {opt:packages} nginx,curl")
    return list(dict.fromkeys(packages))


def _check_runcmd(commands: list[str]) -> list[str]:
    for command in commands:
        if not command.strip() or "\0" in command:
            raise InvalidInput(f"{{opt:runcmd}} {command!r} is empty or holds a NUL byte", hint="give a shell command")
    return commands


def _check_document(text: str, what: str) -> str:
    """Check a user-data or vendor-data document as far as its kind allows; returns the kind."""
    kind = user_data_kind(text)
    if kind == "unknown":
        raise InvalidInput(f"{what} is not a document cloud-init reads",
                           cause="its first line is not a header cloud-init recognises, so it would be ignored",
                           hint="start it with #cloud-config (YAML) or #! (a script)")
    if kind == "cloud-config":
        _load_cloud_config(text, what)
    elif kind == "MIME multipart":
        _check_mime(text, what)
    return kind


def _load_cloud_config(text: str, what: str) -> Map:
    doc = yaml_lines.load(text, what)
    if doc is None:
        return Map()
    if not isinstance(doc, Map):
        raise InvalidInput(f"{what} must be a YAML mapping (key: value lines)",
                           cause=f"it holds a {type(doc).__name__}")
    return doc


def _check_mime(text: str, what: str) -> None:
    message = email.message_from_string(text)
    parts = [p for p in message.walk() if not p.is_multipart()]
    for number, part in enumerate(parts, 1):
        if part.get_content_type() != "text/cloud-config":
            continue
        payload = part.get_payload(decode=True)
        body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(part.get_payload())
        _load_cloud_config(body, f"{what}, MIME part {number} (text/cloud-config; lines count from the part)")


# --------------------------------------------------------------------------- user-data

# cloud-init's last word, on the console (the serial log kvmhub reads): the ready marker, as the tiny appliance's
READY_MESSAGE = "KVMHUB-READY cloud-init $version finished, up $uptime s"


def _user_data(req: CloudInitRequest, keys: list[str], packages: list[str], runcmd: list[str]) -> str:
    wanted = [opt for opt, given in (("{opt:ssh_key}", keys), ("{opt:password}", req.password),
                                     ("{opt:packages}", packages), ("{opt:runcmd}", runcmd)) if given]  # fmt: skip
    text = ""
    if req.user_data is not None:
        what = f"user-data {req.user_data.name}"
        text = _text(req.user_data, "user-data")
        kind = _check_document(text, what)
        if kind not in ("cloud-config", "empty"):  # kvmhub's own key and ready marker stay out of it
            if wanted:
                raise InvalidInput(
                    f"{', '.join(wanted)} cannot be merged into {what}",
                    cause=f"it is a {kind}, not #cloud-config; kvmhub merges options only into #cloud-config YAML",
                    hint="put them in the user-data yourself (for MIME: a text/cloud-config part), or drop "
                    + ("that option" if len(wanted) == 1 else "those options"),
                )
            return text
        doc = _load_cloud_config(text, what) if kind == "cloud-config" else Map()
        if not wanted and req.access_key is None:
            return text if kind == "cloud-config" else "#cloud-config\n"
    else:
        what = "user-data"
        doc = Map()
        if not wanted and req.access_key is None:
            return "#cloud-config\n"
    if req.access_key is not None:
        keys = [*keys, *read_ssh_keys([TextDocument(name="kvmhub's key", text=req.access_key)])]
        doc.setdefault("final_message", READY_MESSAGE)
    if keys:
        existing = _list_at(doc, "ssh_authorized_keys", what)
        existing.extend(k for k in keys if k not in existing)
    if req.password is not None:
        _merge_password(doc, hash_password(req.password), what)
    if packages:
        existing = _list_at(doc, "packages", what)
        existing.extend(p for p in packages if p not in existing)
        doc.setdefault("package_update", True)
    if runcmd:
        _list_at(doc, "runcmd", what).extend(runcmd)
    return "#cloud-config\n" + yaml_lines.dump(doc)


def _list_at(doc: Map, key: str, what: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        doc[key] = value = Seq()
    if not isinstance(value, list):
        line = yaml_lines.line_of(doc, key)
        raise InvalidInput(f"{what}{f', line {line}' if line else ''}: {key} must be a list to add to",
                           hint=f"write it as '{key}:' followed by '- item' lines")
    return value


def _merge_password(doc: Map, hashed: str, what: str) -> None:
    """The default user's password, as the set-passwords module reads it (the hash, never expired)."""
    chpasswd = doc.get("chpasswd")
    if chpasswd is not None and not isinstance(chpasswd, dict):
        raise InvalidInput(f"{what}: chpasswd must be a mapping")
    if "password" in doc or (chpasswd and (chpasswd.get("list") or chpasswd.get("users"))):
        raise InvalidInput(
            f"{{opt:password}} and {what} both set passwords",
            cause="the user-data already has password or a chpasswd list/users",
            hint="drop {opt:password}, or remove the passwords from the user-data",
        )
    doc["password"] = hashed
    if chpasswd is None:
        doc["chpasswd"] = chpasswd = Map()
    chpasswd.setdefault("expire", False)
