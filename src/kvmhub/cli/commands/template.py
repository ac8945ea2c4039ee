"""`kvmhub template create|ls|show|rm`: warm templates, thin commands over services.templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through

if TYPE_CHECKING:
    from kvmhub.models.template import TemplateInfo

app = typer.Typer(help="Warm templates: a running VM's memory and disk, from which new VMs start in a moment "
                  "(`kvmhub create NAME --template T`).", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _route(*rest: str) -> str:
    from kvmhub.validate import check_name

    for word in rest[:1]:
        check_name(word, "template")
    return through.path("templates", *rest)


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f}M"


@app.command()
def create(
    name: str,
    source: Annotated[str, typer.Option("--from", help="the running VM (at ready) to make it from")],
) -> None:
    """Make a template from a running VM: its memory saved, its disk frozen as the base (the VM is left shut off
    on an overlay of it)."""
    from kvmhub.models.template import TemplateCreateRequest, TemplateInfo

    req = TemplateCreateRequest(name=name, source=source)
    with live.report(f"template create {name}") as report:
        if (server := state.remote()) is not None:
            _route(name)
            info = TemplateInfo.model_validate(through.operation(server, "POST", _route(), report,
                                                                 req.model_dump(mode="json")))
        else:
            from kvmhub.services.templates import make

            info = make.create(state.hv(), req, report=report)
    output.say(f"template {info.name} made from {source}: state {_mib(info.state_bytes)}, "
               f"base {info.base} {_mib(info.base_bytes)}")


@app.command("ls")
def ls(json_out: JsonOpt = False) -> None:
    """List templates with their sizes and the VMs made from them."""
    if (server := state.remote()) is not None:
        from kvmhub.models.template import TemplateInfo

        found = [TemplateInfo.model_validate(t) for t in server.request("GET", _route())]
    else:
        from kvmhub.services.templates import store

        found = store.list_templates(state.hv())
    if json_out:
        output.print_json(found)
        return
    if not found:
        output.say("no templates (`kvmhub template create NAME --from VM` makes one)")
        return
    output.table(["NAME", "FROM", "IMAGE", "CPUS", "MEMORY", "STATE", "BASE", "VMS"],
                 [(t.name, t.source, t.image or "", str(t.vcpus), f"{t.memory_mib}M", _mib(t.state_bytes),
                   _mib(t.base_bytes), ", ".join(t.vms)) for t in found])


@app.command()
def show(name: str, json_out: JsonOpt = False) -> None:
    """Show one template: sizes of its state and base, the VMs whose disks sit on its base."""
    info: TemplateInfo
    if (server := state.remote()) is not None:
        from kvmhub.models.template import TemplateInfo

        info = TemplateInfo.model_validate(server.request("GET", _route(name)))
    else:
        from kvmhub.services.templates import store

        info = store.show(state.hv(), name)
    if json_out:
        output.print_json(info)
        return
    for key, value in info.model_dump().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        output.out.print(f"{key:>12}: {shown}", markup=False)


@app.command()
def rm(name: str) -> None:
    """Remove a template (refused while VMs sit on its base)."""
    with live.report(f"template rm {name}") as report:
        if (server := state.remote()) is not None:
            through.operation(server, "DELETE", _route(name), report)
        else:
            from kvmhub.services.templates import make

            make.remove(state.hv(), name, report=report)
    output.say(f"template {name} removed")
