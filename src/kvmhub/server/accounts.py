"""The server's accounts: users with a role, their API tokens and browser sessions, in kvmhub's state database.

Passwords are kept as argon2 hashes. A token's or session's secret is 32 random bytes, shown once and kept as its
SHA-256 (a slow hash adds nothing to a secret that long); each also has a public id by which it is looked up, and
the secret is then compared in constant time. Wrong passwords beyond a few lock the user out for a while, longer
after each further one.

This module uses no web framework, so the CLI's ``user`` and ``token`` commands share it with the server.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.ops.journal import connect, transaction
from kvmhub.validate import check_name

PASSWORD_MIN = 8
PASSWORD_MAX = 1024
FREE_FAILURES = 5  # wrong passwords in a row before the user is locked out
LOCK_BASE_S = 30.0  # the first lock-out; each further wrong password doubles it
LOCK_MAX_S = 900.0
SESSION_S = 12 * 3600.0
TOKEN_PREFIX = "kvh"  # noqa: S105 (what every token starts with, not a secret)
ID_PATTERN = r"^[0-9a-f]{12}$"
DESCRIPTION_MAX = 200
LOCAL_NAME = "local"  # who callers on the unix socket act as

_hasher = PasswordHasher()
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def at_least(role: Role, needed: Role) -> bool:
    """True when ``role`` may do what ``needed`` may."""
    return _RANK[role] >= _RANK[needed]


class AuthFailed(KvmhubError):
    """Credentials that name no one: a wrong password, an unknown, revoked or expired token or session."""

    default_code = "auth.invalid"


class UserInfo(BaseModel):
    """A user as listed (never the password hash)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    role: Role
    created: float
    locked_until: float | None = None  # set while wrong passwords keep the user out


class TokenInfo(BaseModel):
    """An API token as listed: everything but its secret."""

    model_config = ConfigDict(extra="forbid")

    id: str
    user: str
    role: Role | None = None  # None: the user's own role
    project: str | None = None
    description: str = ""
    created: float
    expires: float | None = None
    last_used: float | None = None


class NewToken(TokenInfo):
    """A token just made: the only time its secret is shown."""

    secret: str


@dataclass(frozen=True)
class Grant:
    """Whom valid credentials name, and with what role and project they act."""

    user: str
    role: Role
    project: str | None = None


@dataclass(frozen=True)
class NewSession:
    cookie: str
    csrf: str
    expires: float


def now() -> float:
    return time.time()


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``2h``, ``7d`` or ``1w``; InvalidInput otherwise."""
    if m := _DURATION.fullmatch(text.strip()):
        return float(m.group(1)) * _UNIT_S[m.group(2)]
    raise InvalidInput(f"cannot read {text!r} as a duration", cause="a duration is a number and a unit: s, m, h, d, w",
                       hint="for example 30d or 12h")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _same(secret: str, digest: str) -> bool:
    return hmac.compare_digest(_sha256(secret), digest)


@functools.cache
def _decoy() -> str:
    # verified against when the user does not exist, so a wrong name takes as long as a wrong password
    return _hasher.hash(secrets.token_urlsafe(16))


def check_password(password: str) -> str:
    """``password`` if it is acceptable for an account, else InvalidInput saying the rule."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters; this one has {len(password)}",
                           hint="pick a longer passphrase")
    return password


def _user_row(db: sqlite3.Connection, name: str) -> tuple[str, str, str, float, int, float] | None:
    row = db.execute("SELECT name, role, password, created, failed_logins, locked_until FROM users WHERE name=?",
                     (name,)).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])


def _no_user(name: str) -> NotFound:
    return NotFound(f"no user named {name!r}", hint="list them: {cmd:user ls}", code="user.not_found")


# -- users --------------------------------------------------------------------------------------------------

def add_user(name: str, role: Role, password: str) -> UserInfo:
    """Make a user; Conflict (``name.taken``) when the name is in use."""
    check_name(name, "user")
    if name == LOCAL_NAME:
        raise InvalidInput(f"{name!r} names the local admin on the unix socket", hint="pick another name")
    check_password(password)
    hashed = _hasher.hash(password)
    created = now()
    try:
        with transaction(connect()) as db:
            db.execute("INSERT INTO users (name, role, password, created) VALUES (?,?,?,?)",
                       (name, Role(role), hashed, created))
    except sqlite3.IntegrityError:
        raise Conflict(f"a user named {name!r} exists already", hint="pick another name, or change its password "
                       "with {cmd:user passwd}", code="name.taken") from None
    return UserInfo(name=name, role=Role(role), created=created)


def list_users() -> list[UserInfo]:
    """Every user, by name."""
    rows = connect().execute("SELECT name, role, created, locked_until FROM users ORDER BY name").fetchall()
    t = now()
    return [UserInfo(name=r[0], role=Role(r[1]), created=r[2], locked_until=r[3] if r[3] > t else None)
            for r in rows]


def get_user(name: str) -> UserInfo:
    """One user; NotFound (``user.not_found``) when there is none of that name."""
    row = _user_row(connect(), name)
    if row is None:
        raise _no_user(name)
    return UserInfo(name=row[0], role=Role(row[1]), created=row[3],
                    locked_until=row[5] if row[5] > now() else None)


def remove_user(name: str) -> None:
    """Remove a user with its tokens and sessions."""
    with transaction(connect()) as db:
        if db.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 0:
            raise _no_user(name)


def set_password(name: str, password: str) -> None:
    """Give a user a new password; this also lifts a lock-out and ends the user's browser sessions."""
    check_password(password)
    hashed = _hasher.hash(password)
    with transaction(connect()) as db:
        changed = db.execute("UPDATE users SET password=?, failed_logins=0, locked_until=0 WHERE name=?",
                             (hashed, name)).rowcount
        if changed == 0:
            raise _no_user(name)
        db.execute("DELETE FROM sessions WHERE user=?", (name,))


def login(name: str, password: str) -> Grant:
    """The user whose password this is; AuthFailed otherwise (``auth.throttled`` while locked out)."""
    db = connect()
    row = _user_row(db, name)
    if row is None:
        _matches(_decoy(), password)
        raise AuthFailed("wrong user name or password")
    _, role, hashed, _, failed, locked_until = row
    if locked_until > now():
        raise AuthFailed(f"too many wrong passwords for {name!r}: try again in {int(locked_until - now()) + 1} s",
                         cause=f"{failed} wrong passwords in a row", code="auth.throttled",
                         hint="wait, or have an admin set a new password")
    if not _matches(hashed, password):
        with transaction(db):  # counted inside the write lock: parallel guesses each count
            failed = db.execute("UPDATE users SET failed_logins = failed_logins + 1 WHERE name=?"
                                " RETURNING failed_logins", (name,)).fetchone()[0]
            if failed >= FREE_FAILURES:
                lock = min(LOCK_BASE_S * 2 ** (failed - FREE_FAILURES), LOCK_MAX_S)
                db.execute("UPDATE users SET locked_until=? WHERE name=?", (now() + lock, name))
        raise AuthFailed("wrong user name or password")
    with transaction(db):
        db.execute("UPDATE users SET failed_logins=0, locked_until=0 WHERE name=?", (name,))
        if _hasher.check_needs_rehash(hashed):
            db.execute("UPDATE users SET password=? WHERE name=?", (_hasher.hash(password), name))
    return Grant(user=name, role=Role(role))


def _matches(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


# -- tokens -------------------------------------------------------------------------------------------------

def add_token(user: str, *, role: Role | None = None, project: str | None = None, expires_in: float | None = None,
              description: str = "") -> NewToken:
    """Make an API token for ``user``, acting with ``role`` (at most the user's) and, if given, in ``project``."""
    owner = get_user(user)
    if role is not None and not at_least(owner.role, role):
        raise InvalidInput(f"a token of {user!r} cannot be {role}: the user is {owner.role}",
                           hint=f"give the token a role up to {owner.role}", code="input.invalid")
    if project is not None:
        check_name(project, "project")
    if expires_in is not None and expires_in <= 0:
        raise InvalidInput("a token's lifetime must be positive", code="input.invalid")
    if len(description) > DESCRIPTION_MAX or not description.isprintable():
        raise InvalidInput(f"a token's description is up to {DESCRIPTION_MAX} printable characters",
                           code="input.invalid")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    created = now()
    expires = created + expires_in if expires_in is not None else None
    with transaction(connect()) as db:
        db.execute("INSERT INTO tokens (id, user, secret_sha256, role, project, description, created, expires)"
                   " VALUES (?,?,?,?,?,?,?,?)", (token_id, user, _sha256(secret), role, project, description,
                                                 created, expires))
    return NewToken(id=token_id, user=user, role=role, project=project, description=description, created=created,
                    expires=expires, secret=f"{TOKEN_PREFIX}_{token_id}_{secret}")


def list_tokens(user: str | None = None) -> list[TokenInfo]:
    """The tokens of ``user`` (everyone's when None), oldest first, without their secrets."""
    query = "SELECT id, user, role, project, description, created, expires, last_used FROM tokens"
    rows = connect().execute(query + (" WHERE user=? ORDER BY created" if user else " ORDER BY created"),
                             (user,) if user else ()).fetchall()
    return [TokenInfo(id=r[0], user=r[1], role=r[2], project=r[3], description=r[4], created=r[5], expires=r[6],
                      last_used=r[7]) for r in rows]


def remove_token(token_id: str, user: str | None = None) -> None:
    """Revoke a token (only one of ``user``'s when given); NotFound (``token.not_found``) otherwise."""
    sql, args = "DELETE FROM tokens WHERE id=?", [token_id]
    if user is not None:
        sql, args = sql + " AND user=?", [*args, user]
    with transaction(connect()) as db:
        if db.execute(sql, args).rowcount == 0:
            raise NotFound(f"no token {token_id!r}" + (f" of {user!r}" if user else ""),
                           hint="list them: {cmd:token ls}", code="token.not_found")


def resolve_token(presented: str) -> Grant:
    """Whom a bearer token names; AuthFailed when it is malformed, unknown, revoked or expired."""
    prefix, _, rest = presented.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id or not secret:
        raise AuthFailed("not a kvmhub token", hint="send Authorization: Bearer kvh_...")
    db = connect()
    row = db.execute("SELECT t.secret_sha256, t.role, t.project, t.expires, t.last_used, u.name, u.role"
                     " FROM tokens t JOIN users u ON u.name = t.user WHERE t.id=?", (token_id,)).fetchone()
    if row is None or not _same(secret, row[0]):
        raise AuthFailed("unknown or revoked token")
    t = now()
    if row[3] is not None and row[3] <= t:
        raise AuthFailed("the token has expired", hint="make a new one")
    if row[4] is None or t - row[4] > 60:  # when it was last used, to the minute: no write on every request
        with transaction(db):
            db.execute("UPDATE tokens SET last_used=? WHERE id=?", (t, token_id))
    user_role = Role(row[6])
    role = Role(row[1]) if row[1] and at_least(user_role, Role(row[1])) else user_role
    return Grant(user=row[5], role=role, project=row[2])


# -- browser sessions ---------------------------------------------------------------------------------------

def open_session(user: str, lifetime: float = SESSION_S) -> NewSession:
    """A browser session for ``user``: the cookie's value and the CSRF token mutating requests must carry."""
    session_id, secret, csrf = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    created = now()
    with transaction(connect()) as db:
        db.execute("DELETE FROM sessions WHERE expires <= ?", (created,))
        db.execute("INSERT INTO sessions (id, user, secret_sha256, csrf_sha256, created, expires)"
                   " VALUES (?,?,?,?,?,?)", (session_id, user, _sha256(secret), _sha256(csrf), created,
                                              created + lifetime))
    return NewSession(cookie=f"{session_id}.{secret}", csrf=csrf, expires=created + lifetime)


def resolve_session(cookie: str, csrf: str | None, *, mutating: bool) -> Grant:
    """Whom a session cookie names; AuthFailed when it is unknown or expired, ``auth.csrf`` when a mutating
    request does not carry the session's CSRF token."""
    session_id, _, secret = cookie.partition(".")
    row = connect().execute("SELECT s.secret_sha256, s.csrf_sha256, s.expires, u.name, u.role FROM sessions s"
                            " JOIN users u ON u.name = s.user WHERE s.id=?", (session_id,)).fetchone()
    if row is None or not secret or not _same(secret, row[0]) or row[2] <= now():
        raise AuthFailed("the session has ended", hint="log in again: POST /api/v1/session")
    if mutating and (csrf is None or not _same(csrf, row[1])):
        raise AuthFailed("a change made with a session cookie must carry the session's CSRF token",
                         hint="send the csrf_token POST /api/v1/session answered in the X-CSRF-Token header",
                         code="auth.csrf")
    return Grant(user=row[3], role=Role(row[4]))


def close_session(cookie: str) -> None:
    """End the session the cookie names (nothing when it names none)."""
    session_id, _, secret = cookie.partition(".")
    db = connect()
    row = db.execute("SELECT secret_sha256 FROM sessions WHERE id=?", (session_id,)).fetchone()
    if row is not None and _same(secret, row[0]):
        with transaction(db):
            db.execute("DELETE FROM sessions WHERE id=?", (session_id,))
