"""People who sign in as themselves: their role, password, API tokens and sign-in limits.

Passwords are kept only as argon2id hashes (argon2-cffi, docs/decisions.md "Passwords"); API
tokens are random and kept only as their SHA-256, so each is shown once. Deactivating a
person deletes their tokens and bumps their `session_epoch` in one transaction: a console
session carries the epoch it was opened under and is void once it differs.

Failed sign-ins count against the login and against the client address, bad tokens against
the address and, when the token names a real token id, against its person, each in Redis for
a window of keys.SIGNIN_WINDOW; past the limit the answer is the same refusal, without checking.
Callers pass plain values (validated by ivr.schemas); nothing here touches Flask.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ivr import keys
from ivr.access import BOOTSTRAP, ROLES, Actor
from ivr.services import Services

__all__ = ["ROLES", "Person", "LoginTaken", "create", "get", "by_login", "list_people",
           "update", "authenticate", "signin_locked", "issue_token", "revoke_token", "whoami",
           "token_locked", "session_person", "tokens_of"]

SIGNIN_LIMIT_LOGIN = 5
"""Failed sign-ins for one login within keys.SIGNIN_WINDOW before it is locked."""
SIGNIN_LIMIT_CLIENT = 20
"""Failed sign-ins (or bad tokens) from one address within the window before it is locked."""
TOKEN_LIMIT_PERSON = 10
"""Bad secrets for one person's token ids within the window before their tokens are refused."""
TOKEN_PREFIX = "ivr_"
PASSWORD_MAX = 1024
"""Longer sign-in attempts fail without hashing (the schemas allow 200 characters)."""

_hasher = PasswordHasher()
# Verified against when the login is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_UPDATABLE = frozenset({"login", "name", "role", "phone", "active", "password"})


class LoginTaken(Exception):
    """Another person already has this login (logins are unique, case-insensitively)."""


class NotFound(Exception):
    """No person with that id."""


@dataclass(frozen=True)
class Person:
    """One person as the API and the console show them (never the password hash)."""

    id: str
    login: str
    name: str
    role: str
    phone: str | None
    active: bool
    session_epoch: int
    created_at: str
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "login": self.login, "name": self.name, "role": self.role,
                "phone": self.phone, "active": self.active, "created_at": self.created_at,
                "created_by": self.created_by}


def _now_iso(svc: Services) -> str:
    return svc.now().isoformat().replace("+00:00", "Z")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def token_hash(token: str) -> str:
    """The SHA-256 a token is stored under."""
    return _digest(token)


def _from_hash(person_id: str, h: Mapping[str, str]) -> Person:
    return Person(id=person_id, login=h["login"], name=h.get("name", ""), role=h["role"],
                  phone=h.get("phone") or None, active=h.get("active") == "1",
                  session_epoch=int(h.get("session_epoch", "0")),
                  created_at=h.get("created_at", ""), created_by=h.get("created_by", ""))


def get(svc: Services, person_id: str) -> Person | None:
    """The person with this id, or None."""
    h: dict[str, str] = svc.redis.hgetall(keys.person(person_id))  # type: ignore[assignment]
    return _from_hash(person_id, h) if h.get("login") else None


def by_login(svc: Services, login: str) -> Person | None:
    """The person holding `login` (case-insensitive), or None."""
    person_id = svc.redis.get(keys.person_login(login.strip().lower()))
    return get(svc, str(person_id)) if person_id else None


def list_people(svc: Services) -> list[Person]:
    """Everyone, oldest first."""
    ids = [str(i) for i in svc.redis.zrange(keys.people(), 0, -1)]  # type: ignore[union-attr]
    found = (get(svc, i) for i in ids)
    return [p for p in found if p is not None]


def create(svc: Services, *, login: str, name: str, role: str, password: str,
           phone: str | None = None, active: bool = True, by: str) -> Person:
    """Add a person; raises LoginTaken when the login is in use. `by` is who made them."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    login = login.strip().lower()
    person_id = "p-" + secrets.token_hex(8)
    now = svc.now()
    fields: dict[Any, Any] = {"login": login, "name": name, "role": role, "phone": phone or "",
              "active": "1" if active else "0", "session_epoch": "0",
              "password_hash": _hasher.hash(password), "created_at": _now_iso(svc),
              "created_by": by, "updated_at": _now_iso(svc), "updated_by": by}
    if not svc.redis.set(keys.person_login(login), person_id, nx=True):
        raise LoginTaken(login)
    with svc.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.person(person_id), mapping=fields)
        pipe.zadd(keys.people(), {person_id: now.timestamp()})
        pipe.execute()
    found = get(svc, person_id)
    assert found is not None
    return found


def update(svc: Services, person_id: str, changes: Mapping[str, Any], *, by: str) -> Person:
    """Change any of login, name, role, phone, active, password; raises NotFound/LoginTaken.

    A new password, a new role or deactivation bumps session_epoch (console sessions end);
    deactivation also deletes every token of the person, in the same transaction.
    """
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    current = get(svc, person_id)
    if current is None:
        raise NotFound(person_id)
    fields: dict[Any, Any] = {"updated_at": _now_iso(svc), "updated_by": by}
    for name in ("name", "phone"):
        if name in changes:
            fields[name] = str(changes[name] or "")
    if "role" in changes:
        if changes["role"] not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        fields["role"] = str(changes["role"])
    if "password" in changes:
        fields["password_hash"] = _hasher.hash(str(changes["password"]))
    deactivate = changes.get("active") is False and current.active
    if "active" in changes:
        fields["active"] = "1" if changes["active"] else "0"
    bump = deactivate or "password" in changes or (
        "role" in changes and changes["role"] != current.role)
    new_login = str(changes["login"]).strip().lower() if "login" in changes else current.login
    if new_login != current.login:
        if not svc.redis.set(keys.person_login(new_login), person_id, nx=True):
            raise LoginTaken(new_login)
        fields["login"] = new_login
    def attempt(pipe: redis.client.Pipeline) -> None:
        # WATCHed: a token issued meanwhile makes this run again, so none outlives it
        token_ids = [str(t) for t in pipe.smembers(keys.person_tokens(person_id))]  # type: ignore[union-attr]
        hashes = [str(pipe.get(keys.token_ref(t)) or "") for t in token_ids]
        pipe.multi()
        pipe.hset(keys.person(person_id), mapping=fields)
        if bump:
            pipe.hincrby(keys.person(person_id), "session_epoch", 1)
        if new_login != current.login:
            pipe.delete(keys.person_login(current.login))
        if deactivate:
            _delete_tokens(pipe, person_id, token_ids, hashes)
        elif new_login != current.login:
            for h in hashes:
                if h:
                    pipe.hset(keys.token(h), "name", new_login)

    svc.redis.transaction(attempt, keys.person_tokens(person_id))
    found = get(svc, person_id)
    assert found is not None
    return found


def _delete_tokens(pipe: redis.client.Pipeline, person_id: str, token_ids: list[str],
                   hashes: list[str]) -> None:
    for token_id, h in zip(token_ids, hashes, strict=True):
        pipe.delete(keys.token_ref(token_id))
        if h:
            pipe.delete(keys.token(h))
    pipe.delete(keys.person_tokens(person_id))


def session_person(svc: Services, person_id: str, epoch: int) -> Person | None:
    """The signed-in person of a console session opened under `epoch`, or None when the
    session is void (the person is gone, inactive, or their epoch moved on)."""
    found = get(svc, person_id)
    if found is None or not found.active or found.session_epoch != epoch:
        return None
    return found


# --- Sign-in and its limits ------------------------------------------------------------------

def _subject(text: str) -> str:
    return _digest(text)[:32]


def _key(svc: Services, kind: str, subject: str) -> str:
    """The failure counter of `subject` for the current window: windows are fixed spans of
    keys.SIGNIN_WINDOW on the app's clock, so a lockout ends when its window does (and a test
    moves past it with freezegun); the key's TTL only cleans up."""
    window = int(svc.now().timestamp()) // keys.SIGNIN_WINDOW
    return keys.auth_failures(kind, subject, window)


def _count(svc: Services, *names: str) -> list[int]:
    values = svc.redis.mget(list(names))
    return [int(v or 0) for v in values]  # type: ignore[union-attr]


def _fail(svc: Services, *names: str) -> None:
    with svc.redis.pipeline(transaction=True) as pipe:
        for name in names:
            pipe.incr(name)
            pipe.expire(name, 2 * keys.SIGNIN_WINDOW, nx=True)
        pipe.execute()


def _signin_keys(svc: Services, login: str, client: str) -> tuple[str, str]:
    return (_key(svc, "login", _subject(login.strip().lower())),
            _key(svc, "client", _subject(client)))


def signin_locked(svc: Services, login: str, client: str) -> bool:
    """True while the login or the client address has too many recent failed sign-ins."""
    by_name, by_client = _count(svc, *_signin_keys(svc, login, client))
    return by_name >= SIGNIN_LIMIT_LOGIN or by_client >= SIGNIN_LIMIT_CLIENT


def authenticate(svc: Services, login: str, password: str, *, client: str) -> Person | None:
    """The person when login and password match an active person and neither the login nor
    the address is locked out; else None, the same None whatever the reason."""
    login_key, client_key = _signin_keys(svc, login, client)
    if signin_locked(svc, login, client):
        return None
    if len(password) > PASSWORD_MAX:  # not worth hashing: no stored password is this long
        _fail(svc, login_key, client_key)
        return None
    found = by_login(svc, login) if login.strip() else None
    stored = (svc.redis.hget(keys.person(found.id), "password_hash") if found else None)
    ok = False
    try:
        ok = _hasher.verify(str(stored) if stored else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        pass
    if not ok or found is None or not found.active or not stored:
        _fail(svc, login_key, client_key)
        return None
    svc.redis.delete(login_key)
    if _hasher.check_needs_rehash(str(stored)):
        svc.redis.hset(keys.person(found.id), "password_hash", _hasher.hash(password))
    return found


# --- API tokens --------------------------------------------------------------------------------

def issue_token(svc: Services, person_id: str, *, by: str) -> tuple[str, str]:
    """A new API token for an active person: (token_id, plaintext). Only the hash is kept,
    so the plaintext is shown once. Raises NotFound for an unknown or inactive person."""
    found = get(svc, person_id)
    if found is None or not found.active:
        raise NotFound(person_id)
    token_id = "t-" + secrets.token_hex(8)
    plaintext = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    h = token_hash(plaintext)
    with svc.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.token(h), mapping={"name": found.login, "person_id": person_id,
                                          "token_id": token_id, "created_at": _now_iso(svc),
                                          "created_by": by})
        pipe.set(keys.token_ref(token_id), h)
        pipe.sadd(keys.person_tokens(person_id), token_id)
        pipe.execute()
    return token_id, plaintext


def tokens_of(svc: Services, person_id: str) -> list[dict[str, str]]:
    """The person's tokens as {id, created_at, created_by} (never the secret), by id."""
    out = []
    for token_id in sorted(str(t) for t in svc.redis.smembers(keys.person_tokens(person_id))):  # type: ignore[union-attr]
        h = svc.redis.get(keys.token_ref(token_id))
        record: dict[str, str] = svc.redis.hgetall(keys.token(str(h))) if h else {}  # type: ignore[assignment]
        out.append({"id": token_id, "created_at": record.get("created_at", ""),
                    "created_by": record.get("created_by", "")})
    return out


def revoke_token(svc: Services, token_id: str, *, by: str) -> bool:
    """Delete a token at once; False when there is no token with that id. (`by` is logged by
    the caller; a revoked token leaves nothing behind to carry it.)"""
    h = svc.redis.get(keys.token_ref(token_id))
    if not h:
        return False
    person_id = svc.redis.hget(keys.token(str(h)), "person_id")
    with svc.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.token(str(h)), keys.token_ref(token_id))
        if person_id:
            pipe.srem(keys.person_tokens(str(person_id)), token_id)
        pipe.execute()
    return True


def _token_keys(svc: Services, client: str | None, token_id: str | None) -> list[str]:
    names = []
    if client is not None:
        names.append(_key(svc, "token_client", _subject(client)))
    if token_id is not None:
        names.append(_key(svc, "token_person", _subject(token_id)))
    return names


def token_locked(svc: Services, client: str) -> bool:
    """True while the client address has sent too many bad tokens (or failed sign-ins)."""
    bad_tokens, signins = _count(svc, *_token_keys(svc, client, None),
                                 _key(svc, "client", _subject(client)))
    return bad_tokens >= SIGNIN_LIMIT_CLIENT or signins >= SIGNIN_LIMIT_CLIENT


def _token_id(token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, _ = token[len(TOKEN_PREFIX):].partition("_")
    return token_id if sep and token_id.startswith("t-") and len(token_id) == 18 else None


def whoami(svc: Services, bearer_token: str, bootstrap: str, *,
           client: str | None = None) -> Actor | None:
    """The Actor a bearer token stands for, or None (unknown, revoked, inactive, locked).

    IVR_ADMIN_TOKEN (`bootstrap`) is Actor(None, "bootstrap", "admin"). A bad token counts
    against `client` and, when it names a real token id, against that id's person; a person
    whose tokens met too many bad secrets is refused until the window passes.
    """
    token = bearer_token.strip()
    if not token:
        return None
    if client is not None and token_locked(svc, client):
        return None
    if bootstrap and hmac.compare_digest(token_hash(token), token_hash(bootstrap)):
        return BOOTSTRAP
    token_id = _token_id(token)
    person_key = _token_keys(svc, None, token_id) if token_id else []
    if person_key and _count(svc, *person_key)[0] >= TOKEN_LIMIT_PERSON:
        return None
    record: dict[str, str] = svc.redis.hgetall(keys.token(token_hash(token)))  # type: ignore[assignment]
    found = get(svc, record["person_id"]) if record.get("person_id") else None
    if found is None or not found.active:
        known = token_id is not None and bool(svc.redis.exists(keys.token_ref(token_id)))
        _fail(svc, *_token_keys(svc, client, token_id if known else None))
        return None
    return Actor(found.id, found.login, found.role)
