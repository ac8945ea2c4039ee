"""`kvmhub project ls|show|add|rm|set` and `kvmhub project member add|rm`: projects, their quotas and members,
in this host's state database or through the server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from kvmhub.models import ProjectInfo, ProjectQuota

app = typer.Typer(help="Projects: who may act on which VMs, and their quotas (VMs, vCPUs, memory, disk, networks).",
                  no_args_is_help=True)
member_app = typer.Typer(help="The users who may act in a project.", no_args_is_help=True)
app.add_typer(member_app, name="member")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
Name = Annotated[str, typer.Argument(help="the project's name")]
LIMIT_HELP = "; 'none' for unlimited"
MaxVms = Annotated[str | None, typer.Option("--max-vms", help="at most this many VMs" + LIMIT_HELP)]
MaxCpus = Annotated[str | None, typer.Option("--max-cpus", help="at most this many vCPUs (VMs' maximums)" + LIMIT_HELP)]
MaxMemory = Annotated[str | None, typer.Option("--max-memory", help="at most this much memory, e.g. 16G" + LIMIT_HELP)]
MaxDisk = Annotated[str | None, typer.Option("--max-disk", help="at most this much disk capacity, e.g. 500G"
                                             + LIMIT_HELP)]
MaxNetworks = Annotated[str | None, typer.Option("--max-networks", help="at most this many networks" + LIMIT_HELP)]


def _quota(vms: str | None, cpus: str | None, memory: str | None, disk: str | None,
           networks: str | None) -> ProjectQuota:
    """The quotas given (and only those: the others keep their value)."""
    from pydantic import ValidationError

    from kvmhub.errors import InvalidInput
    from kvmhub.models import ProjectQuota
    from kvmhub.validate import parse_size

    given: dict[str, int | None] = {}
    for field, text, unit in (("max_vms", vms, None), ("max_cpus", cpus, None), ("max_memory", memory, "M"),
                              ("max_disk", disk, "G"), ("max_networks", networks, None)):
        if text is None:
            continue
        if text.strip().lower() in ("none", "unlimited"):
            given[field] = None
        elif unit is not None:
            given[field] = parse_size(text, what=field.removeprefix("max_"), default_unit=unit)
        elif text.strip().isdigit():
            given[field] = int(text)
        else:
            raise InvalidInput(f"{{opt:{field}}} {text!r} is not a whole number", hint="a count, or 'none'")
    try:
        return ProjectQuota(**given)
    except ValidationError:
        raise InvalidInput("a quota is out of range", hint="give a count or size a host can have") from None


def _limit(value: int | None, size: bool = False) -> str:
    from kvmhub.validate import format_size

    if value is None:
        return "-"
    return format_size(value) if size else str(value)


def _print(info: ProjectInfo) -> None:
    from kvmhub.validate import format_size

    q, u = info.quota, info.use
    rows = [("VMs", u.vms if u else "", _limit(q.max_vms)), ("vCPUs", u.cpus if u else "", _limit(q.max_cpus)),
            ("memory", format_size(u.memory) if u else "", _limit(q.max_memory, True)),
            ("disk", format_size(u.disk) if u else "", _limit(q.max_disk, True)),
            ("networks", u.networks if u else "", _limit(q.max_networks))]
    typer.echo(f"project {info.name}; members: {', '.join(info.members) or '-'}")
    output.table(["", "IN USE", "QUOTA"], rows)


def _send(method: str, route: str, body: Any = None) -> ProjectInfo:
    from kvmhub.models import ProjectInfo

    server = state.remote()
    assert server is not None
    return ProjectInfo.model_validate(server.request(method, route, body))


@app.command("ls")
def ls(json_out: JsonOpt = False) -> None:
    """Projects with their use and quotas (through the server: those you are a member of)."""
    if (server := state.remote()) is not None:
        from kvmhub.models import ProjectInfo

        found = [ProjectInfo.model_validate(p) for p in through.get(server, "projects")]
    else:
        from kvmhub.services import projects

        found = projects.list_projects(state.hv())
    if json_out:
        output.print_json(found)
        return
    from kvmhub.validate import format_size

    def used(value: int, limit: int | None, size: bool = False) -> str:
        return f"{format_size(value) if size else value}/{_limit(limit, size)}"

    output.table(["NAME", "VMS", "CPUS", "MEMORY", "DISK", "MEMBERS"],
                 [(p.name, used(p.use.vms if p.use else 0, p.quota.max_vms),
                   used(p.use.cpus if p.use else 0, p.quota.max_cpus),
                   used(p.use.memory if p.use else 0, p.quota.max_memory, True),
                   used(p.use.disk if p.use else 0, p.quota.max_disk, True), ", ".join(p.members) or "-")
                  for p in found])


@app.command("show")
def show(name: Name, json_out: JsonOpt = False) -> None:
    """One project: its members, what its VMs use and its quotas."""
    if (server := state.remote()) is not None:
        from kvmhub.models import ProjectInfo

        info = ProjectInfo.model_validate(through.get(server, "projects", name))
    else:
        from kvmhub.services import projects

        info = projects.get_project(name, state.hv())
    if json_out:
        output.print_json(info)
    else:
        _print(info)


@app.command("add")
def add(name: Name, max_vms: MaxVms = None, max_cpus: MaxCpus = None, max_memory: MaxMemory = None,
        max_disk: MaxDisk = None, max_networks: MaxNetworks = None) -> None:
    """Make a project, with quotas if given (none: unlimited)."""
    from kvmhub.models import ProjectRequest

    quota = _quota(max_vms, max_cpus, max_memory, max_disk, max_networks)
    req = ProjectRequest(name=name, **quota.model_dump(exclude_unset=True))
    if state.remote() is not None:
        _send("POST", through.path("projects"), req.model_dump(exclude_unset=True))
    else:
        from kvmhub.services import projects

        projects.create_project(req)
    output.say(f"project {name} added")


@app.command("set")
def set_quota(name: Name, max_vms: MaxVms = None, max_cpus: MaxCpus = None, max_memory: MaxMemory = None,
              max_disk: MaxDisk = None, max_networks: MaxNetworks = None) -> None:
    """Change a project's quotas ('none' lifts one); those not given stay."""
    from kvmhub.errors import InvalidInput

    quota = _quota(max_vms, max_cpus, max_memory, max_disk, max_networks)
    if not quota.model_fields_set:
        raise InvalidInput("nothing to set", hint="give a quota, e.g. {opt:max_vms} 10")
    if state.remote() is not None:
        info = _send("PATCH", through.path("projects", name), quota.model_dump(exclude_unset=True))
    else:
        from kvmhub.services import projects

        info = projects.set_quota(name, quota)
    output.say(f"quotas of project {info.name} changed")


@app.command("rm")
def rm(name: Name) -> None:
    """Remove a project (refused while it owns VMs)."""
    if (server := state.remote()) is not None:
        server.request("DELETE", through.path("projects", name))
    else:
        from kvmhub.services import projects

        projects.remove_project(state.hv(), name)
    output.say(f"project {name} removed")


@member_app.command("add")
def member_add(project: Name, user: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """Let a user act in a project."""
    if state.remote() is not None:
        _send("POST", through.path("projects", project, "members"), {"user": user})
    else:
        from kvmhub.services import projects

        projects.add_member(project, user)
    output.say(f"{user} is a member of project {project}")


@member_app.command("rm")
def member_rm(project: Name, user: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """Take a user out of a project."""
    if state.remote() is not None:
        _send("DELETE", through.path("projects", project, "members", user))
    else:
        from kvmhub.services import projects

        projects.remove_member(project, user)
    output.say(f"{user} is no longer a member of project {project}")
