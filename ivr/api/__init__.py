"""The admin JSON API under /api/ (PRODUCT.md §2): one blueprint, one module per noun.

Every request is authorized once, here, from the one table ivr.api.routes.ROUTES: 401
without a valid bearer token, 429 for an address that sent too many bad ones, 403 when the
token's role may not do the endpoint's action. Views read the caller as `actor()` and record
`actor().login` with every write.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, request

from ivr import access, person, schemas
from ivr.access import Actor
from ivr.api.routes import ROUTES
from ivr.errors import ApiError
from ivr.services import Services

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def authorize() -> None:
    """Who is calling, and may they call this endpoint (ROUTES[endpoint].action)."""
    svc: Services = current_app.extensions["ivr"]
    client = request.remote_addr or "unknown"
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if person.token_locked(svc, client):
        raise ApiError(429, "too_many_attempts", "too many bad tokens or sign-ins from this "
                                                 "address; try again in 15 minutes")
    found = (person.whoami(svc, token, current_app.config["IVR_ADMIN_TOKEN"], client=client)
             if scheme.lower() == "bearer" else None)
    if found is None:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    g.actor = found
    route = ROUTES.get(request.endpoint or "")
    if route is not None and not access.allowed(found.role, route.action):
        raise ApiError(403, "forbidden", f"the role {found.role} may not do {route.action}")


def actor() -> Actor:
    """The person (or the bootstrap token) making this request."""
    return g.actor  # type: ignore[no-any-return]


def json_body(schema: str, alt: str | None = None) -> Any:
    """The request's JSON checked against `schema` (or `alt` when the body is a list): a 415
    unless JSON, else a 400 naming every bad field (error.errors, error.field the first)."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send application/json")
    body = request.get_json(silent=True)
    name = alt if alt is not None and isinstance(body, list) else schema
    if body is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    problems = schemas.validate(name, body)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ApiError(400, first.code, first.message + more, first.field,
                       errors=[p.to_json() for p in problems])
    return body


from ivr.api import (  # noqa: E402,F401  (routes register on bp)
    calls,
    customers,
    incidents,
    openapi,
    people,
    supervisors,
)
