"""`kvmhub rm` deletes only the serial log kvmhub made for the VM, never another file a definition names."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner

VICTIM = "/var/lib/libvirt/keep-me.txt"


def _domain_xml(name: str, log: str) -> bytes:
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64").text = "hvm"
    serial = etree.SubElement(etree.SubElement(dom, "devices"), "serial", type="pty")
    etree.SubElement(serial, "log", file=log)
    return etree.tostring(dom)


def _victim(host: TestHost) -> Path:
    victim = host.inside(VICTIM)
    victim.write_text("not kvmhub's\n")
    return victim


def test_rm_leaves_the_log_file_a_virsh_domain_names(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    victim = _victim(prepared_host)
    xml = tmp_path / "d.xml"
    xml.write_bytes(_domain_xml("virsh-made", VICTIM))
    prepared_host.virsh("define", str(xml))
    r = kvmhub("rm", "virsh-made")
    assert r.code == 0, r.err
    assert kvmhub("show", "virsh-made").code == 3
    assert victim.read_text() == "not kvmhub's\n"


def test_rm_leaves_a_log_path_edited_into_a_kvmhub_vm(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    victim = _victim(prepared_host)
    assert kvmhub("create", "edited-log", "--image", "tiny", "--no-start").code == 0
    tree = etree.fromstring(prepared_host.virsh("dumpxml", "--inactive", "edited-log").stdout.encode())
    (log,) = tree.findall("devices/serial/log")
    log.set("file", VICTIM)
    xml = tmp_path / "d.xml"
    xml.write_bytes(etree.tostring(tree))
    prepared_host.virsh("define", str(xml))
    r = kvmhub("rm", "edited-log")
    assert r.code == 0, r.err
    assert victim.read_text() == "not kvmhub's\n"


def test_rm_deletes_the_serial_log_kvmhub_made(prepared_host: TestHost, kvmhub: Runner) -> None:
    assert kvmhub("create", "own-log", "--image", "tiny", "--no-start").code == 0
    shown = kvmhub("show", "own-log", "--json").json()
    assert shown["serial_log"] == "/var/log/libvirt/qemu/own-log-serial.log"
    log = prepared_host.inside(shown["serial_log"])
    log.write_text("boot messages\n")
    r = kvmhub("rm", "own-log")
    assert r.code == 0, r.err
    assert not log.exists()
