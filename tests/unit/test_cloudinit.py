"""Seed documents from create's cloud-init options and files: merged, passed through, or refused with the line."""

from __future__ import annotations

import base64
import gzip
import io
import re
import shutil
import subprocess
from pathlib import Path

import pycdlib
import pytest
import yaml
from passlib.hash import sha512_crypt

from kvmhub.errors import InvalidInput, exit_code
from kvmhub.services.vm.cloudinit import (
    CloudInitRequest,
    SeedDocuments,
    hash_password,
    password_option,
    read_document,
    seed_documents,
    user_data_kind,
)
from kvmhub.services.vm.network_config import parse_network_config
from kvmhub.tools.seed import build_nocloud_seed

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvmhubtestkeyonlyforunittestsxxxxxxxxxxxxxx me@host"
KEY2 = 'from="10.0.0.0/8",no-pty ssh-rsa ' + base64.b64encode(b"\0\0\0\x07ssh-rsa kvmhub").decode() + " other@host"
PASSWORD = "s3cret pass:word"  # noqa: S105
OTHER = "pw"
TINY = Path(__file__).parents[2] / "src/kvmhub/tools/tiny/files"
AWK = TINY / "network-config.awk"


@pytest.fixture(autouse=True)
def fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same SHA-512 crypt with fewer rounds, so these tests stay quick (the real cost is tested once)."""
    monkeypatch.setattr("kvmhub.services.vm.cloudinit.sha512_crypt", sha512_crypt.using(rounds=1000))  # type: ignore[no-untyped-call]


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


_WHAT = {"user_data": "user-data", "ssh_keys": "SSH key", "network_config": "network-config",
         "vendor_data": "vendor-data"}


def _docs(tmp_path: Path, **kw: object) -> SeedDocuments:
    """Seed documents for files read as the CLI reads them (paths become documents named after them)."""
    for key, what in _WHAT.items():
        value = kw.get(key)
        if isinstance(value, Path):
            kw[key] = read_document(value, what)
        elif isinstance(value, list):
            kw[key] = [read_document(p, what) for p in value]
    return seed_documents(CloudInitRequest(hostname="vm1", instance_id="iid-1", **kw))  # type: ignore[arg-type]


def _cloud_config(text: str) -> dict[str, object]:
    assert text.startswith("#cloud-config\n")
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def _refused(match: str, tmp_path: Path, **kw: object) -> InvalidInput:
    with pytest.raises(InvalidInput, match=match) as info:
        _docs(tmp_path, **kw)
    return info.value


# --------------------------------------------------------------------------- every option


def test_no_options_give_an_empty_cloud_config_and_the_identity() -> None:
    docs = seed_documents(CloudInitRequest(hostname="web-1", instance_id="iid-42"))
    assert yaml.safe_load(docs.meta_data) == {"instance-id": "iid-42", "local-hostname": "web-1"}
    assert docs.user_data == "#cloud-config\n"
    assert docs.network_config is None and docs.vendor_data is None and docs.static_ipv4 == ()


def test_every_option_lands_in_cloud_inits_own_keys(tmp_path: Path) -> None:
    keys = _file(tmp_path, "k.pub", f"# my keys\n{KEY}\n\n{KEY2}\n{KEY}\n")
    docs = _docs(tmp_path, ssh_keys=[keys], password=PASSWORD, packages=["nginx", "curl", "nginx"],
                 runcmd=["echo hi > /root/ran", "touch /x"])
    doc = _cloud_config(docs.user_data)
    assert doc["ssh_authorized_keys"] == [KEY, KEY2]
    assert doc["packages"] == ["nginx", "curl"] and doc["package_update"] is True
    assert doc["runcmd"] == ["echo hi > /root/ran", "touch /x"]
    hashed = doc["password"]
    assert isinstance(hashed, str) and hashed.startswith("$6$") and sha512_crypt.verify(PASSWORD, hashed)
    assert doc["chpasswd"] == {"expire": False}
    assert "users" not in doc  # the default user gets the password; root stays as the image has it


def test_user_cloud_config_is_merged_not_replaced(tmp_path: Path) -> None:
    ud = _file(tmp_path, "ud", "#cloud-config\nhostname: other\nruncmd:\n  - echo first\n"
               "users:\n  - default\n  - name: bob\n"
               "write_files:\n  - path: /etc/motd\n    content: |\n      hi\n      there\n")
    doc = _cloud_config(_docs(tmp_path, user_data=ud, runcmd=["echo second"], password=OTHER).user_data)
    assert doc["hostname"] == "other"
    assert doc["runcmd"] == ["echo first", "echo second"]
    assert doc["users"] == ["default", {"name": "bob"}]
    assert doc["write_files"] == [{"path": "/etc/motd", "content": "hi\nthere\n"}]


def test_cloud_config_without_options_is_passed_through_verbatim(tmp_path: Path) -> None:
    text = "#cloud-config\n# a comment kept as written\nruncmd: [echo hi]\n"
    assert _docs(tmp_path, user_data=_file(tmp_path, "ud", text)).user_data == text


def test_password_is_never_in_plain_text_anywhere(tmp_path: Path) -> None:
    docs = _docs(tmp_path, password=PASSWORD, ssh_keys=[_file(tmp_path, "k.pub", KEY)])
    iso = build_nocloud_seed(docs.meta_data, docs.user_data, docs.network_config, docs.vendor_data)
    for text in (docs.meta_data, docs.user_data):
        assert PASSWORD not in text and "s3cret" not in text
    assert b"s3cret" not in iso
    assert "s3cret".encode("utf-16-be") not in iso


def test_the_stored_hash_is_sha512_crypt_with_the_default_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    hashed = hash_password(PASSWORD)
    assert hashed.startswith(f"$6$rounds={sha512_crypt.default_rounds}$")
    assert sha512_crypt.verify(PASSWORD, hashed) and not sha512_crypt.verify("s3cret", hashed)


def test_hashes_are_salted() -> None:
    req = CloudInitRequest(hostname="a", instance_id="b", password=OTHER)
    one, two = (_cloud_config(seed_documents(req).user_data)["password"]
                for _ in range(2))
    assert one != two


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox (Debian package busybox) not installed")
def test_the_tiny_guest_takes_the_default_users_password_for_root(tmp_path: Path) -> None:
    """The appliance (root its only user) reads the top-level password; no root entry is needed."""
    user_data = _docs(tmp_path, password=OTHER).user_data
    subprocess.run(["busybox", "awk", "-v", f"out={tmp_path}", "-f", str(TINY / "cloud-config.awk")],
                   input=user_data, text=True, check=True)
    assert (tmp_path / "password").read_text() == f"{_cloud_config(user_data)['password']}\n"
    assert not (tmp_path / "root-hash").exists()


# --------------------------------------------------------------------------- --password-file and --password


def _no_warning(msg: str) -> None:
    raise AssertionError(f"unexpected warning: {msg}")


@pytest.mark.parametrize("content", [b"s3cret pass\n", b"s3cret pass\r\nsecond line\n", b"s3cret pass"])
def test_password_file_gives_its_first_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    assert password_option(None, path, _no_warning) == "s3cret pass"


def test_password_file_dash_reads_one_line_of_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"from stdin\nrest\n"))
    monkeypatch.setattr("sys.stdin", stdin)
    assert password_option(None, Path("-"), _no_warning) == "from stdin"
    assert stdin.buffer.read() == b"rest\n"


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "holds no password"), (b"\nsecond\n", "holds no password"), (b"\xff\xfe\n", "not UTF-8"),
     (b"x" * 5000, "over 4096 bytes"), (None, "cannot read password file")],
)
def test_bad_password_files_are_refused(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match=words) as info:
        password_option(None, path, _no_warning)
    assert exit_code(info.value) == 2


def test_password_and_password_file_are_exclusive(tmp_path: Path) -> None:
    path = _file(tmp_path, "pw", "a\n")
    with pytest.raises(InvalidInput, match="--password and --password-file are both given"):
        password_option("b", path, _no_warning)


def test_password_still_works_with_a_warning_on_the_command_line(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """`kvmhub create --password` hands the value to create() and warns that other users can see it."""
    from typer.testing import CliRunner

    from kvmhub.cli.main import app
    from kvmhub.services.vm import create as vm_create

    seen: list[str | None] = []
    monkeypatch.setattr(vm_create, "create", lambda _hv, req, **_kw: seen.append(req.password))
    result = CliRunner().invoke(app, ["create", "vm1", "--image", "tiny", "--no-start", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert seen == [PASSWORD]
    assert "warning: --password puts the password on the command line" in result.output
    assert "--password-file" in result.output

    result = CliRunner().invoke(app, ["create", "vm1", "--image", "tiny", "--no-start", "--password-file", "-"],
                                input=f"{OTHER}\n")
    assert result.exit_code == 0, result.output
    assert seen == [PASSWORD, OTHER] and "warning" not in result.output

    pw = _file(tmp_path, "pw", "x\n")
    result = CliRunner().invoke(app, ["create", "vm1", "--image", "tiny", "--password", "y", "--password-file",
                                      str(pw)])
    assert isinstance(result.exception, InvalidInput) and exit_code(result.exception) == 2
    assert seen == [PASSWORD, OTHER]


# --------------------------------------------------------------------------- refused inputs


def test_yaml_error_names_file_line_and_column(tmp_path: Path) -> None:
    ud = _file(tmp_path, "ud", "#cloud-config\nhostname: x\nruncmd:\n  - [unclosed\n")
    err = _refused("not valid YAML at line 5, column 1", tmp_path, user_data=ud)
    assert str(ud) in err.message and "started at line 4" in (err.cause or "")


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    ud = _file(tmp_path, "ud", "#cloud-config\nruncmd: [a]\npackages: [b]\nruncmd: [c]\n")
    err = _refused("line 4", tmp_path, user_data=ud)
    assert "appears twice (lines 2 and 4)" in (err.cause or "")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hello: world\n", "not a document cloud-init reads"),
        ("#cloud-config\n- a\n- b\n", "must be a YAML mapping"),
        ("#cloud-config\nruncmd: echo hi\n", "line 2: runcmd must be a list"),
        ("#cloud-config\npassword: mine\n", "both set passwords"),
        ("#cloud-config\nchpasswd:\n  list: [root:x]\n", "both set passwords"),
    ],
)
def test_bad_or_clashing_user_data_is_refused(tmp_path: Path, text: str, words: str) -> None:
    _refused(words, tmp_path, user_data=_file(tmp_path, "ud", text), password=OTHER, runcmd=["true"])


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("#!/bin/sh\necho hi\n", "script"),
        ("#include\nhttp://example.invalid/ud\n", "include list"),
        ("## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n", "jinja template"),
        ("Content-Type: multipart/mixed; boundary=X\nMIME-Version: 1.0\n\n--X\n"
         "Content-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n--X--\n", "MIME multipart"),
    ],
)
def test_scripts_and_mime_pass_through_and_refuse_merging(tmp_path: Path, text: str, kind: str) -> None:
    assert user_data_kind(text) == kind
    ud = _file(tmp_path, "ud", text)
    assert _docs(tmp_path, user_data=ud).user_data == text
    err = _refused("--password, --runcmd cannot be merged", tmp_path, user_data=ud, password=OTHER, runcmd=["x"])
    assert f"it is a {kind}" in (err.cause or "")


def test_a_bad_cloud_config_part_inside_mime_is_found(tmp_path: Path) -> None:
    text = ("Content-Type: multipart/mixed; boundary=X\nMIME-Version: 1.0\n\n--X\n"
            "Content-Type: text/cloud-config\n\n#cloud-config\nruncmd: [a\n--X--\n")
    _refused("MIME part 1 .* not valid YAML at line", tmp_path, user_data=_file(tmp_path, "ud", text))


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    _refused("cannot read user-data file", tmp_path, user_data=tmp_path / "missing")
    gz = tmp_path / "ud.gz"
    gz.write_bytes(gzip.compress(b"#cloud-config\n"))
    _refused("gzip-compressed", tmp_path, user_data=gz)
    binary = tmp_path / "disk.img"
    binary.write_bytes(b"\x00\xff\xfe" * 10)
    _refused("not UTF-8", tmp_path, vendor_data=binary)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "is a private key"),
        ("not a key at all\n", "line 1 does not look like an SSH public key"),
        ("ssh-ed25519 !!!notbase64!!! me\n", "not base64"),
        ("# only a comment\n", "holds no SSH public key"),
    ],
)
def test_bad_ssh_keys_are_refused(tmp_path: Path, text: str, words: str) -> None:
    _refused(words, tmp_path, ssh_keys=[_file(tmp_path, "k", text)])


@pytest.mark.parametrize("kw", [{"packages": ["ok", "two words"]}, {"packages": [""]}, {"runcmd": ["  "]},
                                {"password": ""}])
def test_bad_option_values_are_refused(tmp_path: Path, kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        _docs(tmp_path, **kw)


def test_vendor_data_is_checked_and_kept_verbatim(tmp_path: Path) -> None:
    good = "#cloud-config\npackages: [htop]  # kept\n"
    assert _docs(tmp_path, vendor_data=_file(tmp_path, "vd", good)).vendor_data == good
    _refused("vendor-data .* not valid YAML at line 3", tmp_path,
             vendor_data=_file(tmp_path, "bad", "#cloud-config\npackages: [a\n"))


# --------------------------------------------------------------------------- network-config

V2 = """version: 2
ethernets:
  eth0:
    match:
      macaddress: '52:54:00:12:34:56'
    set-name: lan0
    addresses: [10.77.0.250/24, "fd00::5/64"]
    gateway4: 10.77.0.1
    routes:
      - to: 10.9.0.0/16
        via: 10.77.0.1
        metric: 100
    nameservers:
      addresses: [10.77.0.1]
      search: [lab.test]
  eth1:
    dhcp4: true
vlans:
  vlan5:
    id: 5
    link: eth1
    addresses: [10.5.0.2/24]
"""


def test_v2_network_config_is_accepted_with_its_static_addresses(tmp_path: Path) -> None:
    docs = _docs(tmp_path, network_config=_file(tmp_path, "net", V2))
    assert docs.static_ipv4 == ("10.77.0.250", "10.5.0.2")
    assert docs.network_config is not None
    assert yaml.safe_load(docs.network_config) == yaml.safe_load(V2)


def test_v1_and_the_network_wrapper_are_accepted() -> None:
    v1 = ("network:\n  version: 1\n  config:\n  - type: physical\n    name: eth0\n    mac_address: 'aa:bb:cc:dd:ee:ff'"
          "\n    subnets:\n    - type: static\n      address: 10.0.0.5\n      netmask: 255.255.255.0\n"
          "      gateway: 10.0.0.1\n  - type: nameserver\n    address: [10.0.0.1]\n")
    parsed = parse_network_config(v1, "n")
    assert parsed.version == 1 and parsed.static_ipv4 == ("10.0.0.5",)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ethernets: {eth0: {dhcp4: true}}\n", "has no version"),
        ("version: 3\n", "line 1: version 3 is not 1 or 2"),
        ("version: 2\nethernets:\n  eth0:\n    addresses: [10.77.0.300/24]\n",
         re.escape("line 4: ethernets.eth0.addresses[0] '10.77.0.300/24' is not an address with a prefix length")),
        ("version: 2\nethernets:\n  eth0:\n    addresses:\n      - 10.77.0.5\n", "line 5: .* prefix length is missing"),
        ("version: 2\nethernets:\n  eth0:\n    adresses: [10.0.0.1/24]\n",
         "line 4: ethernets.eth0.adresses is not a key"),
        ("version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: 52:54:00:12:34:56\n",
         "line 5: .* read as a number"),
        ("version: 2\nethernets:\n  eth0:\n    gateway4: fd00::1\n", "is not an IPv4 address"),
        ("version: 2\nethernets:\n  eth0:\n    set-name: lan0\n", "needs a match"),
        ("version: 2\nethernets:\n  eth0:\n    dhcp4: 'yes'\n", "must be true or false"),
        ("version: 2\nethernets:\n  eth0:\n    routes:\n      - via: 10.0.0.1\n", "line 5: .*routes\\[0\\] needs 'to'"),
        ("version: 2\nethernets: {eth0: {}}\nvlans:\n  v5: {id: 5, link: eth9}\n",
         "names 'eth9', which is not defined"),
        ("version: 2\nbonds:\n  bond0:\n    interfaces: [eth0]\n", "names 'eth0'"),
        ("version: 2\nethernets:\n  eth0:\n    nameservers:\n      addresses: [dns.example]\n", "is not an IP address"),
        ("version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: static\n",
         "needs an address"),
        ("- version: 2\n", "must be a YAML mapping"),
        ("version: 2\n  ethernets: x\n", "not valid YAML at line 2"),
    ],
)
def test_bad_network_config_is_refused_with_its_line(text: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words) as info:
        parse_network_config(text, "/tmp/net.yaml")
    assert "/tmp/net.yaml" in info.value.message


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox (Debian package busybox) not installed")
def test_the_tiny_guest_reads_the_written_network_config() -> None:
    """The appliance's flattener, run with busybox awk on what kvmhub writes into the seed."""
    text = parse_network_config(V2, "net").text
    out = subprocess.run(["busybox", "awk", "-f", str(AWK)], input=text, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    for line in ("ethernets/eth0/match/macaddress=52:54:00:12:34:56", "ethernets/eth0/set-name=lan0",
                 "ethernets/eth0/addresses/0=10.77.0.250/24", "ethernets/eth0/addresses/1=fd00::5/64",
                 "ethernets/eth0/gateway4=10.77.0.1", "ethernets/eth0/routes/0/to=10.9.0.0/16",
                 "ethernets/eth0/routes/0/metric=100", "ethernets/eth0/nameservers/search/0=lab.test",
                 "ethernets/eth1/dhcp4=true", "vlans/vlan5/id=5"):
        assert line in out


# --------------------------------------------------------------------------- the ISO


def test_documents_make_a_seed_cloud_init_reads(tmp_path: Path) -> None:
    docs = _docs(tmp_path, network_config=_file(tmp_path, "net", V2), password=OTHER,
                 vendor_data=_file(tmp_path, "vd", "#cloud-config\n{}\n"))
    assert docs.network_config is not None and docs.vendor_data is not None
    data = build_nocloud_seed(docs.meta_data, docs.user_data, docs.network_config, docs.vendor_data)
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        assert iso.pvd.volume_identifier.decode().rstrip() == "cidata"
        for root in ("rr_path", "joliet_path"):
            names = {f for _d, _s, files in iso.walk(**{root: "/"}) for f in files}
            assert names == {"meta-data", "user-data", "network-config", "vendor-data"}
        for name, text in (("meta-data", docs.meta_data), ("user-data", docs.user_data),
                           ("network-config", docs.network_config), ("vendor-data", docs.vendor_data)):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            assert out.getvalue().decode() == text
    finally:
        iso.close()
