"""`kvmhub image customize IMAGE` and `kvmhub disk edit VM`: offline edits with libguestfs, all or nothing."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmhub.cli import live as live_view
from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from collections.abc import Callable

    from kvmhub.models.customize import CustomizeRequest, CustomizeResult
    from kvmhub.reporting import Reporter

Password = Annotated[list[str] | None, typer.Option(
    "--password", help="USER:PASSWORD (repeatable; visible to other local users in ps: prefer --password-file)")]
PasswordFile = Annotated[list[str] | None, typer.Option(
    "--password-file", help="USER:FILE, the password being FILE's first line (repeatable)")]
SshKey = Annotated[list[str] | None, typer.Option("--ssh-key", help="USER:PUBKEYFILE (repeatable)")]
Hostname = Annotated[str | None, typer.Option("--hostname", help="the guest's hostname (cloud-init keeps it)")]
Upload = Annotated[list[str] | None, typer.Option(
    "--upload", help="LOCALFILE:GUESTPATH, a text file copied in with its mode (repeatable)")]
Write = Annotated[list[str] | None, typer.Option(
    "--write", help="GUESTPATH:TEXT, a file with that content (repeatable)")]
Run = Annotated[list[str] | None, typer.Option(
    "--run", help="shell command run inside the image, no network (repeatable)")]
Firstboot = Annotated[list[Path] | None, typer.Option(
    "--firstboot", help="script run once at the guest's next boot (repeatable)")]
Sysprep = Annotated[bool, typer.Option(
    "--sysprep", help="reset machine-id, SSH host keys, logs, cloud-init state, DHCP leases, shell history")]
JsonOut = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def _split(value: str, flag: str, form: str, *, last: bool = False) -> tuple[str, str]:
    left, sep, right = value.rpartition(":") if last else value.partition(":")
    if not sep or not left or not right:
        raise typer.BadParameter(f"{value!r} is not {form}", param_hint=flag)
    return left, right


def _user(user: str, flag: str) -> str:
    from kvmhub.models.customize import USER_PATTERN

    if not re.fullmatch(USER_PATTERN, user):
        raise typer.BadParameter(f"{user!r} is not a user name (lower case, e.g. root or debian)", param_hint=flag)
    return user


def _text(path: Path, flag: str) -> str:
    try:
        return path.read_bytes().decode()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=flag) from exc
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{path} is not UTF-8 text: only text files are sent", param_hint=flag) from None


def _guest_path(path: str, flag: str) -> str:
    if not path.startswith("/"):
        raise typer.BadParameter(f"the guest path {path!r} is not absolute", param_hint=flag)
    return path


def build_request(*, password: list[str] | None = None, password_file: list[str] | None = None,
                  ssh_key: list[str] | None = None, hostname: str | None = None, upload: list[str] | None = None,
                  write: list[str] | None = None, run: list[str] | None = None,
                  firstboot: list[Path] | None = None, sysprep: bool = False, disk: str | None = None,
                  ) -> CustomizeRequest:
    """The request the options describe (files read here: the server never reads the caller's files)."""
    from pydantic import ValidationError

    from kvmhub.models.customize import DiskEditRequest, GuestFile, UserKey, UserPassword
    from kvmhub.models.documents import TextDocument

    try:
        passwords = []
        for value in password or []:
            user, secret = _split(value, "--password", "USER:PASSWORD")
            passwords.append({"user": _user(user, "--password"), "password": secret})
        for value in password_file or []:
            user, file = _split(value, "--password-file", "USER:FILE")
            lines = _text(Path(file), "--password-file").splitlines()
            if not lines or not lines[0]:
                raise typer.BadParameter(f"{file} has no password on its first line", param_hint="--password-file")
            passwords.append({"user": _user(user, "--password-file"), "password": lines[0]})
        keys = []
        for value in ssh_key or []:
            user, file = _split(value, "--ssh-key", "USER:PUBKEYFILE")
            text = _text(Path(file), "--ssh-key")
            keys.append(UserKey(user=_user(user, "--ssh-key"), key=TextDocument(name=file, text=text)))
        files = []
        for value in upload or []:
            local, guest = _split(value, "--upload", "LOCALFILE:GUESTPATH", last=True)
            mode = stat.S_IMODE(Path(local).stat().st_mode) if Path(local).exists() else None
            files.append(GuestFile(path=_guest_path(guest, "--upload"), text=_text(Path(local), "--upload"), mode=mode))
        for value in write or []:
            guest, text = value.partition(":")[::2]
            if not value.partition(":")[1]:
                raise typer.BadParameter(f"{value!r} is not GUESTPATH:TEXT", param_hint="--write")
            files.append(GuestFile(path=_guest_path(guest, "--write"), text=text))
        scripts = [TextDocument(name=str(p), text=_text(p, "--firstboot")) for p in firstboot or []]
        users = [UserPassword.model_validate(p) for p in passwords]
        return DiskEditRequest(sysprep=sysprep, hostname=hostname, passwords=users, ssh_keys=keys, files=files,
                               run=list(run or []), firstboot=scripts, disk=disk)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "options"
        if "password" in where:  # never echo a password back
            raise typer.BadParameter(f"{where}: {err['msg']}") from None
        raise typer.BadParameter(f"{where}: {err['msg']} (got {err.get('input')!r})") from None


def _hide_passwords() -> None:
    """Blank the passwords in ``sys.argv``: the journal records the command line of each operation."""
    args = sys.argv
    for i, arg in enumerate(args):
        if arg == "--password" and i + 1 < len(args):
            user = args[i + 1].partition(":")[0]
            args[i + 1] = f"{user}:***"
        elif arg.startswith("--password="):
            args[i] = f"--password={arg.removeprefix('--password=').partition(':')[0]}:***"


def _show(result: CustomizeResult, json_out: bool) -> None:
    if json_out:
        output.print_json(result)
        return
    output.say(f"{result.target}: {result.found}")
    for change in result.changes:
        output.say(f"  {change}")
    output.say(f"{result.target} edited in {result.seconds:.1f} s (libguestfs appliance start "
               f"{result.launch_seconds:.1f} s)")


def _edit(title: str, named: tuple[str, str], route: tuple[str, ...], body: dict[str, Any],
          here: Callable[[Reporter], CustomizeResult], json_out: bool) -> None:
    """Run one edit through the server (an operation at ``route``) or here, with its progress; show its result."""
    from kvmhub.models.customize import CustomizeResult

    _hide_passwords()
    with live_view.report(title) as report:
        if (server := state.remote()) is not None:
            from kvmhub.validate import check_name

            check_name(*named)
            result = CustomizeResult.model_validate(through.operation(server, "POST", through.path(*route), report,
                                                                      body))
        else:
            result = here(report)
    _show(result, json_out)


def _body(req: CustomizeRequest, *, disk: bool) -> dict[str, Any]:
    body = req.model_dump(mode="json", exclude_defaults=True)
    if not disk:
        body.pop("disk", None)
    return body


def register(image_app: typer.Typer, disk_app: typer.Typer) -> None:
    """Add `image customize` and `disk edit`."""

    @image_app.command("customize")
    def customize_image(
        image: Annotated[str, typer.Argument(help="the image (`kvmhub image ls`); no VM may be a linked clone of it")],
        password: Password = None, password_file: PasswordFile = None, ssh_key: SshKey = None,
        hostname: Hostname = None, upload: Upload = None, write: Write = None, run: Run = None,
        firstboot: Firstboot = None, sysprep: Sysprep = False, json_out: JsonOut = False,
    ) -> None:
        """Edit an image offline (libguestfs): passwords, SSH keys, hostname, files, commands, first-boot
        scripts, --sysprep. Every edit reaches the image or none does."""
        req = build_request(password=password, password_file=password_file, ssh_key=ssh_key, hostname=hostname,
                            upload=upload, write=write, run=run, firstboot=firstboot, sysprep=sysprep)
        def here(report: Reporter) -> CustomizeResult:
            from kvmhub.services.storage import customize

            return customize.customize_image(state.hv(), image, req, report=report)

        _edit(f"image customize {image}", (image, "image"), ("images", image, "customize"), _body(req, disk=False),
              here, json_out)

    @disk_app.command("edit")
    def edit(
        vm: Annotated[str, typer.Argument(help="a shut-off VM")],
        disk: Annotated[str | None, typer.Option("--disk", help="the disk's target, e.g. vdb (default: the first)")]
        = None,
        password: Password = None, password_file: PasswordFile = None, ssh_key: SshKey = None,
        hostname: Hostname = None, upload: Upload = None, write: Write = None, run: Run = None,
        firstboot: Firstboot = None, sysprep: Sysprep = False, json_out: JsonOut = False,
    ) -> None:
        """Edit a shut-off VM's disk offline, with the edits of `kvmhub image customize`."""
        from kvmhub.models.customize import DiskEditRequest

        req = build_request(password=password, password_file=password_file, ssh_key=ssh_key, hostname=hostname,
                            upload=upload, write=write, run=run, firstboot=firstboot, sysprep=sysprep, disk=disk)
        assert isinstance(req, DiskEditRequest)

        def here(report: Reporter) -> CustomizeResult:
            from kvmhub.services.storage import customize

            return customize.edit_disk(state.hv(), vm, req, report=report)

        _edit(f"disk edit {vm}", (vm, "VM"), ("vms", vm, "edit"), _body(req, disk=True), here, json_out)
