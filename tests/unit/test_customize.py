"""`image customize` and `disk edit`: option parsing, the request model, and refusals before anything changes
(library mode, through the server, and the API), over libvirt's test driver. The edits themselves run in
tests/integration/test_customize.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from pydantic import ValidationError

from kvmhub.cli.commands.customize import build_request
from kvmhub.models.customize import CustomizeRequest, DiskEditRequest
from kvmhub.tools.guestfs_edit import password_hash, with_field
from tests.unit.cli_server import run, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address


def test_options_become_one_request(tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3 me@laptop\n")
    pw = tmp_path / "pw"
    pw.write_text("from-a-file\nignored\n")
    script = tmp_path / "setup.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    boot = tmp_path / "boot.sh"
    boot.write_text("touch /booted\n")
    req = build_request(password=["root:s3:cret"], password_file=[f"debian:{pw}"], ssh_key=[f"root:{key}"],
                        hostname="gold.example", upload=[f"{script}:/usr/local/bin/setup"],
                        write=["/etc/motd:hello: world"], run=["apt-get clean"], firstboot=[boot], sysprep=True,
                        disk="vdb")
    assert isinstance(req, DiskEditRequest) and req.disk == "vdb"
    assert [(p.user, p.password) for p in req.passwords] == [("root", "s3:cret"), ("debian", "from-a-file")]
    assert req.ssh_keys[0].user == "root" and req.ssh_keys[0].key.text.startswith("ssh-ed25519 AAAAC3")
    assert [(f.path, f.text, f.mode) for f in req.files] == [
        ("/usr/local/bin/setup", "#!/bin/sh\necho hi\n", 0o750), ("/etc/motd", "hello: world", None)]
    assert req.run == ["apt-get clean"] and req.firstboot[0].text == "touch /booted\n"
    assert req.sysprep and req.hostname == "gold.example"
    assert "s3:cret" not in repr(req)  # passwords stay out of logs and tracebacks


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"password": ["root"]}, "is not USER:PASSWORD"),
    ({"ssh_key": ["/nonexistent/id.pub"]}, "is not USER:PUBKEYFILE"),
    ({"ssh_key": ["root:/nonexistent/id.pub"]}, "cannot read /nonexistent/id.pub"),
    ({"write": ["etc/motd:hi"]}, "is not absolute"),
    ({"write": ["/etc/motd"]}, "is not GUESTPATH:TEXT"),
    ({"upload": ["/etc/hostname"]}, "is not LOCALFILE:GUESTPATH"),
    ({"hostname": "bad_name!"}, "hostname"),
    ({"password": ["Root User:x"]}, "'Root User' is not a user name"),
    ({"run": ["  "]}, "empty command"),
    ({}, "no edit given"),
])
def test_bad_options_are_usage_errors(kwargs: dict[str, object], said: str) -> None:
    with pytest.raises(typer.BadParameter, match=said):
        build_request(**kwargs)  # type: ignore[arg-type]


def test_binary_uploads_and_empty_password_files_are_refused(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x7fELF\x00\xff\xfe")
    with pytest.raises(typer.BadParameter, match="is not UTF-8 text"):
        build_request(upload=[f"{blob}:/bin/tool"])
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(typer.BadParameter, match="no password on its first line"):
        build_request(password_file=[f"root:{empty}"])


def test_a_bad_password_is_never_echoed() -> None:
    with pytest.raises(typer.BadParameter) as caught:
        build_request(password=["root:" + "x" * 2000])
    assert "xxxx" not in str(caught.value)


def test_the_request_model_refuses_unknown_fields_and_relative_paths() -> None:
    with pytest.raises(ValidationError):
        CustomizeRequest.model_validate({"hostname": "a", "colour": "blue"})
    with pytest.raises(ValidationError):
        CustomizeRequest.model_validate({"files": [{"path": "etc/x", "text": ""}]})


def test_passwords_are_hashed_as_sha512_crypt_that_verifies() -> None:
    hashed = password_hash("correct horse")
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input="correct horse\n",
                           capture_output=True, text=True, check=True).stdout.strip()
    assert hashed.startswith("$6$") and hashed == again


def test_shadow_lines_change_only_for_their_user() -> None:
    shadow = "root:*:19000:0:99999:7:::\ndebian:!:19000:0:99999:7:::\n"
    assert with_field(shadow, "debian", 1, "$6$x$y") == "root:*:19000:0:99999:7:::\ndebian:$6$x$y:19000:0:99999:7:::\n"
    assert with_field(shadow, "nobody", 1, "h") is None


def test_disk_edit_of_a_running_vm_is_refused_naming_stop(server: str) -> None:
    local, remote = run("--local", "disk", "edit", "test", "--hostname", "h"), \
        run("--remote", server, "disk", "edit", "test", "--hostname", "h")
    assert local[0] == remote[0] == 4, (local, remote)
    for _, _, err in (local, remote):
        assert "cannot edit the disks of test: it is running" in err and "`kvmhub stop test`" in err


def test_passwords_given_on_the_command_line_stay_out_of_the_journal(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path))
    code, _, err = run("--local", "disk", "edit", "test", "--password", "root:hunter2", "--password=debian:hunter3")
    assert code == 4 and "hunter" not in err
    code, out, _ = run("--local", "ops", "ls", "--json")
    edits = [op for op in json.loads(out) if op["kind"] == "disk.edit"]
    assert len(edits) == 1 and "root:***" in edits[0]["command"] and "debian:***" in edits[0]["command"]
    assert "hunter" not in out


def test_missing_vm_and_missing_options_answer_alike(server: str) -> None:
    for mode in (("--local",), ("--remote", server)):
        code, _, err = run(*mode, "disk", "edit", "nope", "--hostname", "h")
        assert code == 3 and "no VM named 'nope'" in err
        code, _, err = run(*mode, "image", "customize", "tiny")
        assert code == 2 and "no edit given" in err


def test_api_refusals_are_4xx_with_the_reason(client: TestClient) -> None:
    running = client.post("/api/v1/vms/test/edit", json={"hostname": "h"})
    assert running.status_code == 409 and "POST /api/v1/vms/test/stop" in running.json()["hint"]
    assert client.post("/api/v1/vms/nope/edit", json={"hostname": "h"}).status_code == 404
    assert client.post("/api/v1/vms/test/edit", json={}).status_code == 422
    assert client.post("/api/v1/vms/test/edit", json={"hostname": "h", "disk": "../x"}).status_code == 422
    leaked = client.post("/api/v1/images/gold/customize", json={"passwords": [{"user": "root", "password": ""}]})
    assert leaked.status_code == 422
