"""The CLI prints user text as given: Rich markup and emoji codes in names, paths and messages stay literal."""

from __future__ import annotations

import io

import pytest
from pydantic import BaseModel
from rich.console import Console

from kvmhub.cli import live, output
from kvmhub.cli.commands import host as host_cmd
from kvmhub.errors import Conflict, InvalidInput
from kvmhub.models import HostReport
from kvmhub.models.host import CheckItem, CheckStatus

HOSTILE = ["[/x]", "[bold]x", "[red]", "[link=file:///etc/passwd]click[/link]", "a:thumbs_up:b", "\\[x]"]


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Both consoles write to one terminal-like buffer (so colours, bars and live lines are exercised)."""
    buf = io.StringIO()
    for name, stderr in (("out", False), ("err", True)):
        console = Console(file=buf, force_terminal=True, width=200, highlight=False, soft_wrap=True, stderr=stderr,
                          markup=output.out._markup, emoji=output.out._emoji, color_system=None)
        monkeypatch.setattr(output, name, console)
    return buf


@pytest.mark.parametrize("text", HOSTILE)
def test_error_prints_message_cause_and_hint_literally(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    output.error(InvalidInput(f"invalid VM name {text!r}", cause=f"cause {text}", hint=f"fix {text}"))
    err = capsys.readouterr().err
    assert f"error: invalid VM name {text!r}\n" in err
    assert f"  cause: cause {text}\n" in err
    assert f"  fix:   fix {text}\n" in err


@pytest.mark.parametrize("text", HOSTILE)
def test_say_fields_and_phases_print_literally(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    class Shown(BaseModel):
        name: str
        disks: list[str]

    output.say(f"undo: remove {text}")
    output.fields(Shown(name=text, disks=[text]))
    with live.report(f"creating {text}") as report:
        report.phase(f"cloning {text}")
        report.warn(f"warning: {text}")
        report.note(f"note {text}")
        report.bytes(f"disk {text}", 5, 10)
        report.undone(f"remove {text}", error=f"gone {text}")
    captured = capsys.readouterr()
    assert f"undo: remove {text}\n" in captured.err
    assert f"name: {text}\n" in captured.out and f"disks: {text}\n" in captured.out
    assert f"creating {text}: cloning {text} (" in captured.err
    assert f"creating {text}: warning: {text}\n" in captured.err
    assert f"creating {text}: note {text}\n" in captured.err
    assert f"creating {text}: disk {text}: 50% of 10 (" in captured.err
    assert f"creating {text}: undo: remove {text}: failed: gone {text}\n" in captured.err


@pytest.mark.parametrize("text", HOSTILE)
def test_live_phases_progress_bars_and_host_report_print_literally(text: str, screen: io.StringIO) -> None:
    with live.report(f"importing {text}") as report:
        report.warn(text)
        report.bytes(f"disk {text}", 50, 100)
    with live.report(f"export {text}") as report:
        report.undone(text)
        report.bytes(f"vda {text}", 10, 100)
    host_cmd._print_report(HostReport(uri="test:///default", accelerator="tcg", domain_type="qemu", checks=[
        CheckItem(name=f"pool {text}", status=CheckStatus.FAIL, detail=f"detail {text}", fix=f"fix {text}")]))
    shown = screen.getvalue()
    assert f"importing {text}: warning: {text}" in shown
    assert f"disk {text}" in shown
    assert f"export {text}: undo: {text}" in shown and f"vda {text}" in shown
    assert f"FAIL  pool {text}: detail {text}" in shown and f"fix: fix {text}" in shown


def test_styled_parts_still_read_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    output.error(Conflict("VM web is running", hint="stop it first: {cmd:stop web}"))
    host_cmd._print_report(HostReport(uri="test:///default", accelerator="kvm", domain_type="kvm", checks=[
        CheckItem(name="kvm", status=CheckStatus.OK, detail="/dev/kvm works")]))
    captured = capsys.readouterr()
    assert captured.err == "error: VM web is running\n  fix:   stop it first: `kvmhub stop web`\n"
    assert captured.out == "    ok  kvm: /dev/kvm works\n\nguests will run with: KVM (domain type kvm)\n"
