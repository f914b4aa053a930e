"""Admin API bearer tokens: IVR_ADMIN_TOKEN bootstraps, others are stored as SHA-256 only."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import current_app, g, request

from ivr import keys
from ivr.errors import ApiError
from ivr.services import Services

F = TypeVar("F", bound=Callable[..., Any])


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(svc: Services, name: str, now: datetime) -> str:
    """Create a token for `name`; only its hash is kept, so it is shown once."""
    token = "ivr_" + secrets.token_urlsafe(32)
    svc.redis.hset(keys.token(token_hash(token)), mapping={"name": name,
                                                           "created_at": now.isoformat()})
    return token


def identify(svc: Services, header: str, bootstrap: str) -> str | None:
    """The token's owner name, or None when the Authorization header is not a valid token."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    if hmac.compare_digest(token_hash(token), token_hash(bootstrap)):
        return "admin"
    name = svc.redis.hget(keys.token(token_hash(token)), "name")
    return str(name) if name else None


def admin_required(view: F) -> F:
    """401 unless the request carries a valid bearer token; g.admin names its owner."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        svc: Services = current_app.extensions["ivr"]
        owner = identify(svc, request.headers.get("Authorization", ""),
                         current_app.config["IVR_ADMIN_TOKEN"])
        if owner is None:
            raise ApiError(401, "unauthorized", "a valid bearer token is required")
        g.admin = owner
        return view(*args, **kwargs)

    return checked  # type: ignore[return-value]
