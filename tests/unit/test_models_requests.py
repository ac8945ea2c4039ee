"""Request models are wire types: each survives JSON, refuses what it does not know, and a document given
by content behaves as the file it came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from kvmhub.errors import InvalidInput, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.models import (
    BackupRequest,
    CloneRequest,
    CloudInitRequest,
    CreateRequest,
    HostMedia,
    ImageImportRequest,
    ImportRequest,
    LimitsRequest,
    RestoreRequest,
    SetRequest,
    SnapshotRequest,
    TextDocument,
    VMInfo,
)
from kvmhub.services.storage.media import media_path
from kvmhub.services.vm import cloudinit
from kvmhub.services.vm.create import create
from kvmhub.xml.volume import volume_xml

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvmhubtestkeyonlyforunittestsxxxxxxxxxxxxxx me@host"
USER_DATA = TextDocument(name="/home/me/ud.yaml", text="#cloud-config\nruncmd:\n  - echo hi\n")

EXAMPLES: list[BaseModel] = [
    CreateRequest(name="web", image="tiny", memory="1G", ssh_keys=[TextDocument(name="k.pub", text=KEY)],
                  user_data=USER_DATA, limits=LimitsRequest(cpu_weight=200, pins=["0:1"]), packages=["nginx"]),
    CreateRequest(name="inst", iso=HostMedia(volume="isos/debian.iso"), vnc_port=5901),
    CreateRequest(name="k", kernel=HostMedia(path="/srv/vmlinuz"), initrd=HostMedia(path="/srv/initrd"),
                  location=None, kickstart=TextDocument(name="ks.cfg", text="text\n")),
    CloudInitRequest(hostname="web", instance_id="iid-1", user_data=USER_DATA, password="pw"),  # noqa: S106
    LimitsRequest(disk_iops=["vda:100"], net_bw=["0:100/200"]),
    SetRequest(cpus=2, memory="2G", autostart=True),
    CloneRequest(source="web", name="web2", linked=True),
    ImportRequest(media=HostMedia(path="/srv/web.kvmhub"), as_name="web3", network="lab"),
    SnapshotRequest(vm="web", name="before", disk_only=True, quiesce=True),
    BackupRequest(vm="web", directory="/srv/backup/web", incremental=True),
    RestoreRequest(vm="web", directory="/srv/backup/web", at="2", as_name="web-r"),
    ImageImportRequest(name="deb", url="https://example.org/d.qcow2", sha256="0" * 64, format="qcow2"),
    ImageImportRequest(name="up", media=HostMedia(volume="uploads/d.vmdk"), format="vmdk", os="debian12"),
]


@pytest.mark.parametrize("req", EXAMPLES, ids=lambda r: type(r).__name__)
def test_requests_round_trip_through_json(req: BaseModel) -> None:
    again = type(req).model_validate_json(req.model_dump_json())
    assert again == req
    assert again.model_dump_json() == req.model_dump_json()


@pytest.mark.parametrize("req", EXAMPLES, ids=lambda r: type(r).__name__)
def test_requests_refuse_an_unknown_field(req: BaseModel) -> None:
    data = req.model_dump(mode="json") | {"no_such_field": 1}
    with pytest.raises(ValidationError, match="no_such_field"):
        type(req).model_validate(data)


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (ImageImportRequest, {"name": "x", "url": "https://h/x", "format": "iso"}, "format"),
        (CreateRequest, {"name": "x", "iso": {"volume": "no-slash"}}, "volume"),
        (VMInfo, {"name": "x", "uuid": "u", "state": "sleeping", "persistent": True, "autostart": False,
                  "vcpus": 1, "memory_mib": 64, "domain_type": "qemu"}, "state"),
    ],
)
def test_values_outside_a_closed_set_are_refused(model: type[BaseModel], data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        model.model_validate(data)


@pytest.mark.parametrize("data", [{}, {"path": "/a", "volume": "p/v"}])
def test_host_media_names_exactly_one_source(data: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="exactly one of path or volume"):
        HostMedia.model_validate(data)
    with pytest.raises(ValidationError, match="exactly one of url or media"):
        ImageImportRequest.model_validate({"name": "x", "url": "https://h/x", "media": {"path": "/a"}})


def test_create_with_bad_user_data_content_names_the_document(tmp_path: Path) -> None:
    bad = TextDocument(name=str(tmp_path / "ud.yaml"), text="#cloud-config\nruncmd:\n  - [unclosed\n")
    with Hypervisor("test:///default") as hv, pytest.raises(InvalidInput) as err:
        create(hv, CreateRequest(name="ud-vm", image="no-such-image", user_data=bad))
    assert str(err.value).startswith(f"user-data {tmp_path / 'ud.yaml'}")
    assert "not valid YAML at line" in str(err.value)


def test_user_data_read_from_a_file_gives_the_same_error_as_its_content(tmp_path: Path) -> None:
    path = tmp_path / "ud.yaml"
    path.write_text("#cloud-config\nruncmd: [a]\nruncmd: [b]\n")
    from_file = cloudinit.read_document(path, "user-data")
    assert from_file == TextDocument(name=str(path), text=path.read_text())
    messages = []
    for doc in (from_file, TextDocument(name=str(path), text=path.read_text())):
        with pytest.raises(InvalidInput) as err:
            cloudinit.seed_documents(CloudInitRequest(hostname="a", instance_id="b", user_data=doc))
        messages.append(str(err.value))
    assert messages[0] == messages[1] and str(path) in messages[0]


def test_a_media_volume_that_is_missing_is_refused_by_name() -> None:
    with Hypervisor("test:///default") as hv, pytest.raises(NotFound, match=r"--iso default-pool/nope\.iso") as err:
        media_path(hv, HostMedia(volume="default-pool/nope.iso"), "--iso")
    assert err.value.code == "volume.not_found"


def test_a_media_volume_resolves_to_its_path() -> None:
    with Hypervisor("test:///default") as hv:
        pool = hv_storage.lookup_pool(hv, "default-pool")
        vol = pool.create_volume(volume_xml("uploaded.iso", 1024**2, "raw"), what="creating a volume")
        try:
            assert media_path(hv, HostMedia(volume="default-pool/uploaded.iso"), "--iso") == Path(vol.path)
        finally:
            vol.delete()
        assert media_path(hv, HostMedia(path="rel/x.iso"), "--iso") == Path("rel/x.iso")
