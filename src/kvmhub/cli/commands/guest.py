"""`kvmhub exec NAME -- CMD...` and `kvmhub cp SRC DST`: commands and files in a guest, through its agent."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through
from kvmhub.cli.fast_exec import writer

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.models.guest import ExecRequest, GuestFileInfo
    from kvmhub.reporting import Reporter

_IN_GUEST = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*):(/.*)", re.DOTALL)


def register(app: typer.Typer) -> None:
    app.command("exec")(exec_)
    app.command("cp")(cp)


def exec_(
    name: str,
    command: Annotated[list[str], typer.Argument(metavar="CMD...", help="the program and its arguments")],
    timeout: Annotated[float | None, typer.Option(help="seconds the command may run; then it is killed")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", metavar="K=V",
                                                  help="add to its environment (repeatable)")] = None,
    no_stdin: Annotated[bool, typer.Option("--no-stdin", "-n",
                                           help="pass no input (else a piped stdin is passed)")] = False,
) -> None:
    """Run a command in a running VM through its guest agent; its output as it comes, its exit code as ours."""
    import base64

    from kvmhub.models.guest import MAX_STDIN, ExecRequest

    stdin = None if no_stdin or sys.stdin.isatty() else sys.stdin.buffer.read(MAX_STDIN + 1)
    req = _request(ExecRequest, argv=command, env=env or [], timeout=timeout,
                   stdin=None if not stdin else base64.b64encode(stdin).decode())
    if (server := state.remote()) is not None:
        code = _exec_remote(server, name, req)
    else:
        from kvmhub.services.vm import guest_exec

        code = guest_exec.run(state.hv(), name, req, out=writer(sys.stdout.buffer),
                              err=writer(sys.stderr.buffer), report=live.lines()).exit_code
    raise typer.Exit(code)


def _request(model: type[ExecRequest], **fields: object) -> ExecRequest:
    """The request, its refusals as InvalidInput in the words the server would use."""
    from pydantic import ValidationError

    from kvmhub.errors import InvalidInput

    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _exec_remote(server: Transport, name: str, req: ExecRequest) -> int:
    from kvmhub.client import guest as guest_client

    return guest_client.exec_stream(server, _route(name, "exec"), req.model_dump(mode="json"),
                                    writer(sys.stdout.buffer), writer(sys.stderr.buffer))


def _route(name: str, *rest: str) -> str:
    from kvmhub.validate import check_name

    check_name(name, "VM")
    return through.path("vms", name, *rest)


def cp(
    src: Annotated[str, typer.Argument(help="a local file, or VM:/PATH")],
    dst: Annotated[str, typer.Argument(help="VM:/PATH (VM:/DIR/ keeps the name), or a local file or directory")],
) -> None:
    """Copy a file into a running VM or out of it through its guest agent (its permission bits kept)."""
    from kvmhub.errors import InvalidInput

    into, out_of = _IN_GUEST.fullmatch(dst), _IN_GUEST.fullmatch(src)
    if bool(into) == bool(out_of):
        raise InvalidInput("one of SRC and DST must be VM:/PATH and the other a local path",
                           hint="e.g. `kvmhub cp notes.txt myvm:/root/` or `kvmhub cp myvm:/etc/hostname .`")
    from kvmhub.services.vm.guest_files import check_path

    if into:
        vm, path = into.group(1), into.group(2)
        path = check_path(path + Path(src).name if path.endswith("/") else path)
        with live.report(f"cp {src} {dst}") as report:
            info = _push(vm, Path(src), path, report)
        output.say(f"copied {info.size} bytes to {vm}:{info.path}{_how(info)}")
        return
    assert out_of is not None
    vm, path = out_of.group(1), check_path(out_of.group(2))
    target = Path(dst)
    if target.is_dir():
        target = target / Path(path).name
    with live.report(f"cp {src} {dst}") as report:
        info = _pull(vm, path, target, report)
    output.say(f"copied {info.size} bytes from {vm}:{info.path} to {target}{_how(info)}")


def _how(info: GuestFileInfo) -> str:
    return " over SSH" if info.via == "ssh" else ""


def _push(vm: str, src: Path, path: str, report: Reporter) -> GuestFileInfo:
    import stat

    from kvmhub.errors import InvalidInput, NotFound

    try:
        facts = src.stat()
    except FileNotFoundError:
        raise NotFound(f"no local file {src}") from None
    if not stat.S_ISREG(facts.st_mode):
        raise InvalidInput(f"{src} is not a regular file", hint="kvmhub cp copies one file at a time")
    mode = stat.S_IMODE(facts.st_mode)
    with src.open("rb") as f:
        if (server := state.remote()) is not None:
            from urllib.parse import urlencode

            from kvmhub.client import streams
            from kvmhub.models.guest import GuestFileInfo

            query = urlencode({"path": path, "mode": f"{mode:o}"})
            return GuestFileInfo.model_validate(streams.upload(
                server, f"{_route(vm, 'files')}?{query}", f, facts.st_size, what=f"{vm}:{path}", report=report))
        from kvmhub.services.vm import guest_files

        return guest_files.push(state.hv(), vm, f, facts.st_size, path, mode=mode, report=report)


def _pull(vm: str, path: str, target: Path, report: Reporter) -> GuestFileInfo:
    import tempfile

    from kvmhub.errors import NotFound

    if not target.parent.is_dir():
        raise NotFound(f"no local directory {target.parent}", hint="make it first, or name another place")
    fd, part = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if (server := state.remote()) is not None:
                from kvmhub.client import guest as guest_client

                info = guest_client.download(server, _route(vm, "files"), path, f, what=f"{vm}:{path}",
                                             report=report)
            else:
                from kvmhub.services.vm import guest_files

                info = guest_files.pull(state.hv(), vm, path, f, report=report)
        if info.mode is not None:
            os.chmod(part, info.mode)
        os.replace(part, target)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
    return info
