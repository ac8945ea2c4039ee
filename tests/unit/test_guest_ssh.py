"""`kvmhub ssh` / `shell` and what create puts in place for them: kvmhub's key and ready marker in the seed,
the user the keys went to, cloud-init's errors, and the refusals (locally and through the server)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kvmhub.errors import Conflict, InvalidInput, NotFound, OperationFailed, OperationTimeout
from kvmhub.hv.domains import Address
from kvmhub.models import Phase, VMInfo
from kvmhub.models.documents import TextDocument
from kvmhub.models.requests_vm import CloudInitRequest
from kvmhub.models.vm import KvmhubMeta
from kvmhub.services.vm import readiness, ssh
from kvmhub.services.vm.cloudinit import READY_MESSAGE, seed_documents
from kvmhub.xml.metadata import metadata_from_xml, metadata_to_xml
from tests.unit.cli_server import run, serving

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIgo4+lYh34X5f3HqStX0pcBiSv4+mLBRGMEg30rNxJ+ kvmhub"
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2Zt0YbGmZqlWm0l8d3b7iMNIb0z7l2y3W2bDq2d5yT me@laptop"


def user_data(**kw: object) -> str:
    return seed_documents(CloudInitRequest(hostname="vm1", instance_id="iid-1", **kw)).user_data  # type: ignore[arg-type]


def test_kvmhubs_key_and_ready_marker_join_the_users_cloud_config() -> None:
    mine = TextDocument(name="me.pub", text=USER_KEY + "\n")
    ud = TextDocument(name="ud.yaml", text="#cloud-config\nfinal_message: done\nruncmd:\n  - echo hi\n")
    doc = yaml.safe_load(user_data(access_key=KEY, ssh_keys=[mine], user_data=ud))
    assert doc["ssh_authorized_keys"] == [USER_KEY, KEY]
    assert doc["final_message"] == "done"  # the user's own wins: ready then comes through the guest agent
    assert doc["runcmd"] == ["echo hi"]
    doc = yaml.safe_load(user_data(access_key=KEY))
    assert doc == {"ssh_authorized_keys": [KEY], "final_message": READY_MESSAGE}
    assert READY_MESSAGE.startswith(readiness.MARK_READY)


def test_a_script_user_data_is_left_as_it_is() -> None:
    script = "#!/bin/sh\necho hi\n"
    assert user_data(access_key=KEY, user_data=TextDocument(name="s.sh", text=script)) == script


def test_the_user_the_keys_go_to() -> None:
    assert ssh.default_user("debian12", None) == "debian"
    assert ssh.default_user("ubuntu22.04", "https://cloud-images.ubuntu.com/x.img") == "ubuntu"
    assert ssh.default_user("centos-stream9", None) == "cloud-user"
    assert ssh.default_user(None, "/var/cache/kvmhub/tiny/tiny-0123abcd.qcow2") == "root"
    assert ssh.default_user(None, "/srv/images/mystery.qcow2") is None
    meta = KvmhubMeta(image="deb", user="debian")
    assert metadata_from_xml(metadata_to_xml(meta)).user == "debian"


def test_cloud_init_errors_are_read_from_its_result() -> None:
    ok = json.dumps({"v1": {"datasource": "DataSourceNoCloud", "errors": []}})
    assert readiness.cloud_init_errors(ok) == []
    failed = {"v1": {"errors": ["('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted "
                                "commands'))"], "recoverable_errors": {"WARNING": ["no such user bob"]}}}
    assert readiness.cloud_init_errors(json.dumps(failed)) == [
        "('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))",
        "WARNING: no such user bob"]
    assert readiness.cloud_init_errors("{") == [f"{readiness.CLOUD_INIT_RESULT} is not JSON"]


def vm(phase: Phase, ips: list[str], user: str | None = "debian") -> VMInfo:
    return VMInfo(name="web", uuid="6695eb01-f6a4-8304-79aa-97f2502e193f", state="running", phase=phase,
                  persistent=True, autostart=False, vcpus=1, memory_mib=512, domain_type="kvm", ips=ips, user=user)


def test_ssh_goes_to_the_first_ipv4_address_as_the_recorded_user_or_user(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path))
    there = ssh.target(vm(Phase.READY, ["fd00::5", "10.77.0.5"]), None)
    assert (there.ip, there.user) == ("10.77.0.5", "debian")
    assert ssh.target(vm(Phase.READY, ["10.77.0.5"]), "root").user == "root"
    with pytest.raises(InvalidInput, match="not a user name"):
        ssh.target(vm(Phase.READY, ["10.77.0.5"]), "-oProxyCommand=x")
    with pytest.raises(NotFound, match="no SSH key"):
        ssh.command(there, None, [])
    public = ssh.public_key()
    assert public.startswith("ssh-ed25519 ") and ssh.public_key() == public  # made once, then kept
    argv = ssh.command(there, None, ["echo", "hi"])
    assert argv[:3] == ["ssh", "-i", str(tmp_path / "ssh" / "id_ed25519")]
    assert f"UserKnownHostsFile={tmp_path}/ssh/known_hosts/{there.uuid}" in argv
    assert argv[-4:] == ["--", "debian@10.77.0.5", "echo", "hi"]


def test_ssh_refuses_a_vm_without_an_address_naming_its_phase() -> None:
    with pytest.raises(Conflict, match="has no address yet: it is defined") as info:
        ssh.target(vm(Phase.DEFINED, []), None)
    assert "kvmhub start web" in str(info.value)
    with pytest.raises(Conflict, match="has no address yet: it is running"):
        ssh.target(vm(Phase.RUNNING, []), None)
    with pytest.raises(Conflict, match="no IPv4 address yet: it is booted"):
        ssh.target(vm(Phase.BOOTED, ["fd00::5"]), None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("server")) as address:
        yield address


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("ssh", "nope"), 3, "no VM named 'nope'"),
        (("shell", "nope"), 3, "no VM named 'nope'"),
        (("ssh", "test", "--user", "a b"), 2, "--user 'a b' is not a user name"),
        (("create", "w1", "--image", "tiny", "--wait=sideways"), 2, "--wait=sideways: no such phase to wait for"),
        (("create", "w1", "--image", "tiny", "--wait-for", "sideways"), 2, "no such phase to wait for"),
    ],
)
def test_refusals_read_the_same_locally_and_through_the_server(server: str, args: tuple[str, ...], code: int,
                                                               words: str) -> None:
    local, remote = run("--local", *args), run("--remote", server, *args)
    assert local[0] == remote[0] == code, (local, remote)
    assert words in local[2] and local[2] == remote[2], (local, remote)


def test_ssh_to_a_stopped_vm_names_its_phase(server: str) -> None:
    # through the server, whose test driver keeps the VM stopped between commands
    assert run("--remote", server, "kill", "test")[0] == 0
    try:
        remote = run("--remote", server, "ssh", "test", "--", "true")
        assert remote[0] == 4 and "VM test has no address yet: it is defined" in remote[2], remote
        assert "`kvmhub start test`" in remote[2]
    finally:
        assert run("--remote", server, "start", "test")[0] == 0


class AgentGuest:
    """A running guest whose agent answers and whose cloud-init left ``result`` (None: not finished yet)."""

    name = "web"

    def __init__(self, result: str | None) -> None:
        self.result = result
        self.hv = type("Hv", (), {"uri": "qemu+ssh://elsewhere/system"})()  # no serial log to read here

    def xml(self, *, inactive: bool = False) -> str:
        return """<domain type='kvm'><name>web</name><memory unit='KiB'>524288</memory><vcpu>1</vcpu>
          <os><type>hvm</type></os><devices>
          <interface type='network'><source network='lab'/><mac address='52:54:00:00:00:05'/></interface>
          <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
          </devices></domain>"""

    def state(self) -> str:
        return "running"

    def agent_ping(self) -> bool:
        return True

    def addresses(self, source: str) -> list[Address]:
        return [Address("52:54:00:00:00:05", "10.77.0.5", 24, "eth0", source)]

    def agent_command(self, command: dict[str, object], timeout: int = 5) -> object:
        if command["execute"] == "guest-file-open":
            if self.result is None:
                raise NotFound("guest-file-open: No such file or directory")
            return 7
        if command["execute"] == "guest-file-read" and self.result is not None:
            return {"buf-b64": base64.b64encode(self.result.encode()).decode(), "eof": True}
        return {}


def test_ready_comes_from_cloud_inits_result_through_the_agent() -> None:
    guest = AgentGuest(None)
    assert readiness.wait_for(guest, Phase.NETWORK, timeout=1).phase is Phase.NETWORK  # type: ignore[arg-type]
    with pytest.raises(OperationTimeout, match="did not become ready"):
        readiness.wait_for(guest, Phase.READY, timeout=0.3)  # type: ignore[arg-type]
    guest.result = json.dumps({"v1": {"errors": []}})
    assert readiness.wait_for(guest, Phase.READY, timeout=1).phase is Phase.READY  # type: ignore[arg-type]


def test_cloud_init_errors_end_the_wait_for_ready_with_the_failing_module() -> None:
    guest = AgentGuest(json.dumps({"v1": {"errors": ["('scripts_user', RuntimeError('Runparts: 1 failures'))"]}}))
    with pytest.raises(OperationFailed, match="cloud-init in VM web finished with errors") as info:
        readiness.wait_for(guest, Phase.READY, timeout=1)  # type: ignore[arg-type]
    assert "scripts_user" in str(info.value)
    assert readiness.wait_for(guest, Phase.NETWORK, timeout=1).phase is Phase.READY  # type: ignore[arg-type]
