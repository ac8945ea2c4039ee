"""`kvmhub user add|ls|rm|passwd`, `kvmhub token add|ls|rm` and `kvmhub audit`: the server's accounts and its
audit log, read and written in this host's state database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import output

if TYPE_CHECKING:
    from kvmhub.server.accounts import Role

user_app = typer.Typer(help="Users of the API server and their roles (admin, operator, viewer).",
                       no_args_is_help=True)
token_app = typer.Typer(help="API tokens: shown once when made, kept hashed, revocable.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
PasswordFile = Annotated[Path | None, typer.Option(
    help="file whose first line is the password ('-': standard input); without it, the password is asked for")]


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _password(password_file: Path | None) -> str:
    from kvmhub.server.accounts import check_password
    from kvmhub.services.vm.cloudinit import password_option

    given = password_option(None, password_file, output.say)
    if given is None:
        given = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return check_password(given)


def _role(text: str | None) -> Role | None:
    from kvmhub.errors import InvalidInput
    from kvmhub.server.accounts import Role

    if text is None:
        return None
    try:
        return Role(text)
    except ValueError:
        raise InvalidInput(f"unknown role {text!r}", hint="one of admin, operator, viewer") from None


@user_app.command("add")
def user_add(name: Annotated[str, typer.Argument(help="the user's name")],
             role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "viewer",
             password_file: PasswordFile = None) -> None:
    """Make a user of the API server."""
    from kvmhub.server import accounts

    checked = _role(role)
    assert checked is not None
    made = accounts.add_user(name, checked, _password(password_file))
    output.say(f"user {made.name} added ({made.role})")


@user_app.command("ls")
def user_ls(json_out: JsonOpt = False) -> None:
    """Every user with its role."""
    from kvmhub.server import accounts

    users = accounts.list_users()
    if json_out:
        output.print_json(users)
        return
    output.table(["NAME", "ROLE", "CREATED", "LOCKED UNTIL"],
                 [(u.name, str(u.role), _when(u.created), _when(u.locked_until)) for u in users])


@user_app.command("rm")
def user_rm(name: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """Remove a user; its tokens and sessions end with it."""
    from kvmhub.server import accounts

    accounts.remove_user(name)
    output.say(f"user {name} removed")


@user_app.command("passwd")
def user_passwd(name: Annotated[str, typer.Argument(help="the user's name")],
                password_file: PasswordFile = None) -> None:
    """Set a user's password (also lifts a lock-out and ends the user's browser sessions)."""
    from kvmhub.server import accounts

    accounts.get_user(name)
    accounts.set_password(name, _password(password_file))
    output.say(f"password of {name} changed")


@token_app.command("add")
def token_add(user: Annotated[str, typer.Argument(help="the user the token acts as")],
              role: Annotated[str | None, typer.Option(help="a lower role than the user's")] = None,
              project: Annotated[str | None, typer.Option(help="restrict the token to this project")] = None,
              expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 30d or 12h (default: none)")] = None,
              description: Annotated[str, typer.Option(help="what the token is for")] = "",
              json_out: JsonOpt = False) -> None:
    """Make an API token and print its secret: the only time it is shown."""
    from kvmhub.server import accounts

    made = accounts.add_token(user, role=_role(role), project=project, description=description,
                              expires_in=accounts.parse_duration(expires) if expires else None)
    if json_out:
        output.print_json(made)
        return
    output.say(f"token {made.id} for {made.user}; its secret, shown only now:")
    typer.echo(made.secret)


@token_app.command("ls")
def token_ls(user: Annotated[str | None, typer.Option(help="only this user's tokens")] = None,
             json_out: JsonOpt = False) -> None:
    """API tokens, without their secrets."""
    from kvmhub.server import accounts

    tokens = accounts.list_tokens(user)
    if json_out:
        output.print_json(tokens)
        return
    output.table(["ID", "USER", "ROLE", "PROJECT", "CREATED", "EXPIRES", "LAST USED", "DESCRIPTION"],
                 [(t.id, t.user, str(t.role or "(user's)"), t.project or "-", _when(t.created), _when(t.expires),
                   _when(t.last_used), t.description) for t in tokens])


@token_app.command("rm")
def token_rm(token_id: Annotated[str, typer.Argument(help="the token's id (from `kvmhub token ls`)")]) -> None:
    """Revoke a token: it is refused from the next request on."""
    from kvmhub.server import accounts

    accounts.remove_token(token_id)
    output.say(f"token {token_id} revoked")


def audit(since: Annotated[str | None, typer.Option(help="an age (15m, 2h, 7d) or an ISO time")] = None,
          user: Annotated[str | None, typer.Option(help="only this user's calls")] = None,
          limit: Annotated[int, typer.Option(help="at most this many, the latest")] = 1000,
          json_out: JsonOpt = False) -> None:
    """Changes made through the API server: who, from where, what, and how each ended."""
    from kvmhub.server import audit as audit_log

    rows = audit_log.entries(audit_log.parse_since(since) if since else None, user, limit)
    if json_out:
        output.print_json(rows)
        return
    output.table(["TIME", "USER", "FROM", "CALL", "KIND", "TARGET", "STATUS", "OPERATION"],
                 [(_when(r.time), r.user or "-", r.client or r.transport, f"{r.method} {r.path}", r.kind or "-",
                   r.target or "-", r.status, r.operation or "-") for r in rows])


def register(app: typer.Typer) -> None:
    """Add the commands to the top-level app."""
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
    app.command()(audit)
