"""Shared folders over libvirt's test driver: the definition edits (shared memory added, nothing else lost), the
confinement of host directories to the admin's roots (symlinks, ``..``, /etc), and the routes and CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from kvmhub.errors import Conflict, InvalidInput, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.models.share import ShareAddRequest, ShareSpec
from kvmhub.services.vm import shares
from kvmhub.xml.filesystem import has_shared_memory, shares_from_xml, with_share, without_share
from tests.unit.cli_server import run, serving

URI = "test:///default"
DOMAIN = """<domain type='kvm'><name>d</name><memory unit='KiB'>262144</memory>
<memoryBacking><hugepages/></memoryBacking><vcpu>1</vcpu><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><source file='/x.img'/><target dev='vda'/></disk>
<filesystem type='mount'><source dir='/srv/a'/><target dir='a'/><readonly/></filesystem>
<video><model type='vga'/></video></devices><seclabel type='none'/></domain>"""


def _at(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path)
    assert found is not None, path
    return found


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An allowed root ``tmp/shares`` (with a directory ``data`` in it), written to a settings file of its own."""
    root = tmp_path / "shares"
    (root / "data").mkdir(parents=True)
    conf = tmp_path / "kvmhub.toml"
    conf.write_text(f'[shares]\nroots = ["{root}"]\n')
    monkeypatch.setenv("KVMHUB_CONFIG", str(conf))
    return root


@pytest.fixture
def hv() -> Iterator[Hypervisor]:
    with Hypervisor(URI) as h:
        yield h


def test_a_virtiofs_share_brings_shared_memory_and_keeps_the_rest_of_the_definition() -> None:
    new = with_share(DOMAIN, ShareSpec(tag="data", source="/srv/data"))
    root = etree.fromstring(new.encode())
    # the 9p share, disk, video, seclabel and hugepages kvmhub does not model are all still there
    assert [el.tag for el in _at(root, "devices")] == ["disk", "filesystem", "filesystem", "video"]
    assert root.find("seclabel") is not None and root.find("memoryBacking/hugepages") is not None
    assert _at(root, "memoryBacking/access").get("mode") == "shared"
    assert root.find("memoryBacking/source") is None  # hugepages back the memory already
    assert has_shared_memory(new) and not has_shared_memory(DOMAIN)
    fs = _at(root, "devices/filesystem[2]")
    assert _at(fs, "driver").get("type") == "virtiofs" and _at(fs, "binary").get("path") == "/usr/lib/qemu/virtiofsd"
    assert shares_from_xml(new) == [ShareSpec(tag="a", source="/srv/a", mode="9p", readonly=True),
                                    ShareSpec(tag="data", source="/srv/data", mode="virtiofs")]
    assert shares_from_xml(without_share(new, "data")) == shares_from_xml(DOMAIN)


def test_memory_without_backing_gets_memfd_after_the_sizes() -> None:
    plain = DOMAIN.replace("<memoryBacking><hugepages/></memoryBacking>", "")
    root = etree.fromstring(with_share(plain, ShareSpec(tag="t", source="/s")).encode())
    assert [el.tag for el in root][:4] == ["name", "memory", "memoryBacking", "vcpu"]
    assert _at(root, "memoryBacking/source").get("type") == "memfd"
    # 9p needs no shared memory
    assert not has_shared_memory(with_share(plain, ShareSpec(tag="t", source="/s", mode="9p")))


def test_a_directory_inside_a_root_is_shared_by_its_real_path(roots: Path) -> None:
    inner = roots / "data"
    assert shares.confine(str(inner), [str(roots)], Path("k.toml")) == str(inner)
    assert shares.confine(f"{roots}/data/../data", [str(roots)], Path("k.toml")) == str(inner)
    os.symlink(inner, roots / "link")
    assert shares.confine(str(roots / "link"), [str(roots)], Path("k.toml")) == str(inner)


@pytest.mark.parametrize("way", ["dotdot", "symlink", "outside"])
def test_escapes_from_the_roots_are_refused_naming_the_setting(roots: Path, tmp_path: Path, way: str) -> None:
    (tmp_path / "private").mkdir()
    os.symlink(tmp_path / "private", roots / "escape")
    source = {"dotdot": f"{roots}/data/../../private", "symlink": str(roots / "escape"),
              "outside": str(tmp_path / "private")}[way]
    with pytest.raises(InvalidInput) as err:
        shares.confine(source, [str(roots)], Path("/etc/kvmhub/kvmhub.toml"))
    assert err.value.code == "share.path_refused"
    assert "outside the roots allowed for shares" in err.value.message
    assert "shares.roots in /etc/kvmhub/kvmhub.toml" in (err.value.hint or "")


@pytest.mark.parametrize("source", ["/", "/etc", "/etc/ssh", "/var", "/var/lib/libvirt/images"])
def test_system_directories_are_never_shared_even_under_a_root_of_slash(source: str) -> None:
    with pytest.raises(InvalidInput) as err:
        shares.confine(source, ["/"], Path("k.toml"))
    assert err.value.code == "share.path_refused" and "is never shared" in err.value.message


def test_a_symlink_to_etc_is_refused_as_etc(roots: Path) -> None:
    os.symlink("/etc", roots / "etc")
    with pytest.raises(InvalidInput, match=r"never shared") as err:
        shares.confine(str(roots / "etc"), [str(roots)], Path("k.toml"))
    assert "(really /etc)" in err.value.message


def test_no_settings_file_means_nothing_may_be_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      hv: Hypervisor) -> None:
    monkeypatch.setenv("KVMHUB_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(InvalidInput, match="outside the roots") as err:
        shares.check(hv, "test", ShareAddRequest(source=str(tmp_path)))
    assert f"shares.roots in {tmp_path / 'none.toml'} lists: none" == err.value.cause


def test_add_to_a_running_vm_without_shared_memory_asks_for_a_restart(roots: Path, hv: Hypervisor) -> None:
    change = shares.add(hv, "test", ShareAddRequest(source=str(roots / "data")))
    assert (change.live, change.restart, change.share.tag) == (False, True, "data")
    assert "memory shared with virtiofsd" in (change.reason or "")
    assert change.note == ("once the VM has it, mount it in the guest: mkdir -p /mnt/data && "
                           "mount -t virtiofs data /mnt/data")
    dom = hv.conn.lookupByName("test")
    assert has_shared_memory(dom.XMLDesc(2)) and not has_shared_memory(dom.XMLDesc(0))
    listed = shares.list_shares(hv, "test")
    assert [(s.tag, s.source, s.attached) for s in listed] == [("data", str(roots / "data"), False)]
    with pytest.raises(Conflict, match="already has a share tagged 'data'"):
        shares.add(hv, "test", ShareAddRequest(source=str(roots), tag="data"))
    gone = shares.remove(hv, "test", "data")
    assert (gone.live, gone.restart) == (False, False)
    assert shares.list_shares(hv, "test") == []
    with pytest.raises(NotFound) as err:
        shares.remove(hv, "test", "data")
    assert err.value.code == "share.not_found"


def test_read_only_virtiofs_is_refused_with_the_reason_and_nothing_changes(roots: Path, hv: Hypervisor) -> None:
    before = hv.conn.lookupByName("test").XMLDesc(2)
    with pytest.raises(InvalidInput) as err:
        shares.add(hv, "test", ShareAddRequest(source=str(roots), readonly=True))
    assert "cannot be read-only" in err.value.message and "no read-only mode" in (err.value.cause or "")
    assert "--mode 9p" in str(err.value)
    assert hv.conn.lookupByName("test").XMLDesc(2) == before
    ro = shares.add(hv, "test", ShareAddRequest(source=str(roots), mode="9p", readonly=True, tag="ro"))
    assert ro.restart and "9p" in (ro.reason or "")
    assert shares.list_shares(hv, "test")[0].readonly


def test_a_vm_with_a_share_is_not_migrated_live(roots: Path, hv: Hypervisor) -> None:
    shares.check_live_migration(hv, "test")
    xml = with_share(hv.conn.lookupByName("test").XMLDesc(0), ShareSpec(tag="data", source=str(roots)))
    reason = shares.live_migration_blocker(xml)
    assert reason is not None and "shared folders (data)" in reason


def test_routes_refuse_bad_input_with_4xx_and_change_nothing(roots: Path, client: TestClient) -> None:
    base = "/api/v1/vms/test/shares"
    r = client.post(base, json={"source": "/etc"})
    assert r.status_code == 400 and r.json()["code"] == "share.path_refused"
    assert client.post(base, json={"source": str(roots), "tag": "../x"}).status_code == 422
    assert client.post(base, json={"source": str(roots), "mode": "nfs"}).status_code == 422
    assert client.post("/api/v1/vms/nope/shares", json={"source": str(roots)}).status_code == 404
    assert client.delete(f"{base}/nope").json()["code"] == "share.not_found"
    assert client.get(base).json() == []
    r = client.post("/api/v1/vms", json={"name": "made", "image": "tiny", "shares": [{"source": "/etc"}]})
    assert r.status_code == 400 and r.json()["code"] == "share.path_refused"
    assert client.get("/api/v1/vms/made").status_code == 404
    r = client.post(base, json={"source": str(roots / "data"), "tag": "d1"})
    assert r.status_code == 202
    op = client.get(f"/api/v1/operations/{r.json()['id']}/wait?timeout=10").json()
    assert op["state"] == "succeeded" and op["result"]["restart"] is True
    assert [s["tag"] for s in client.get(base).json()] == ["d1"]


def test_the_cli_says_the_same_locally_and_through_the_server(roots: Path, tmp_path: Path) -> None:
    with serving(tmp_path / "srv") as server:
        for args, code in ((("share", "add", "test", "/etc"), 2), (("share", "rm", "test", "nope"), 3),
                           (("share", "add", "test", str(roots), "--tag", "a b"), 2), (("share", "ls", "nope"), 3)):
            local, remote = run("--local", *args), run("--remote", server, *args)
            assert local[0] == remote[0] == code, (local, remote)
            assert local[2].splitlines()[0] == remote[2].splitlines()[0]
        out = run("--remote", server, "share", "add", "test", str(roots / "data"), "--tag", "d")
        assert out[0] == 0, out
        assert "test: share d (" in out[2] and "`kvmhub stop test` then `kvmhub start test`" in out[2]
        listed = run("--remote", server, "share", "ls", "test")
        assert listed[0] == 0 and "d " in listed[1] and str(roots / "data") in listed[1] and "virtiofs" in listed[1]
        assert run("--remote", server, "share", "rm", "test", "d")[0] == 0
        assert run("--remote", server, "share", "ls", "test", "--json")[1].strip() == "[]"


def test_create_shares_are_checked_tagged_and_mounted_at_first_boot(roots: Path) -> None:
    planned = shares.plan([ShareAddRequest(source=str(roots / "data")), ShareAddRequest(source=str(roots),
                                                                                        tag="all")])
    assert [(s.tag, s.source) for s in planned] == [("data", str(roots / "data")), ("all", str(roots))]
    assert shares.mount_commands(planned)[0] == ("mkdir -p /mnt/data && (grep -qs ' /mnt/data ' /proc/mounts || "
                                                 "mount -t virtiofs data /mnt/data)")
    twice = shares.plan([ShareAddRequest(source=str(roots / "data"))] * 2)
    assert [s.tag for s in twice] == ["data", "data-1"]
    with pytest.raises(InvalidInput, match="two shares are tagged 'x'"):
        shares.plan([ShareAddRequest(source=str(roots / "data"), tag="x")] * 2)
    with pytest.raises(InvalidInput, match="outside the roots"):
        shares.plan([ShareAddRequest(source="/tmp")])


def test_the_create_option_splits_a_tag_off_only_after_the_last_colon(tmp_path: Path) -> None:
    from kvmhub.cli.commands.share import from_option

    assert (from_option("/srv/a:web").source, from_option("/srv/a:web").tag) == ("/srv/a", "web")
    assert (from_option("/srv/a:b/c").source, from_option("/srv/a:b/c").tag) == ("/srv/a:b/c", None)
    with pytest.raises(InvalidInput, match="cannot be a mount tag"):
        from_option("/srv/a:no way")
