"""People and their API tokens (admin only): list, add, edit, issue a token, revoke one."""

from __future__ import annotations

import logging

from flask import Response, jsonify

from ivr import current_services, person
from ivr.api import actor, bp, json_body
from ivr.errors import ApiError
from ivr.phone import normalize

log = logging.getLogger(__name__)


def _phone(value: object) -> str | None:
    if value in (None, ""):
        return None
    e164 = normalize(str(value))
    if e164 is None:
        raise ApiError(400, "invalid_field", "phone is not a valid phone number", "phone",
                       errors=[{"field": "phone", "message": "phone is not a valid phone number"}])
    return e164


def _taken(login: str) -> ApiError:
    return ApiError(409, "login_taken", f"the login {login} is already in use", "login")


def _shown(p: person.Person) -> dict[str, object]:
    return {**p.to_json(), "tokens": person.tokens_of(current_services(), p.id)}


@bp.get("/people")
def list_people() -> Response:
    """Everyone who can sign in, oldest first, with their token ids (never the tokens)."""
    return jsonify(people=[_shown(p) for p in person.list_people(current_services())])


@bp.post("/people")
def create_person() -> tuple[Response, int]:
    """Add a person; the password is kept only as an argon2 hash and never shown again."""
    body = json_body("PersonNew")
    phone = _phone(body.get("phone"))
    try:
        made = person.create(current_services(), login=body["login"], name=body["name"].strip(),
                             role=body["role"], password=body["password"], phone=phone,
                             active=body.get("active", True), by=actor().login)
    except person.LoginTaken:
        raise _taken(body["login"]) from None
    log.info("person created id=%s role=%s by=%s", made.id, made.role, actor().login)
    return jsonify(_shown(made)), 201


@bp.patch("/people/<person_id>")
def edit_person(person_id: str) -> Response:
    """Change a person; active=false revokes every token and console session at once."""
    body = json_body("PersonPatch")
    changes = dict(body)
    if "phone" in changes:
        changes["phone"] = _phone(changes["phone"])
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    try:
        changed = person.update(current_services(), person_id, changes, by=actor().login)
    except person.NotFound:
        raise ApiError(404, "not_found", "no person with that id") from None
    except person.LoginTaken:
        raise _taken(body["login"]) from None
    log.info("person changed id=%s fields=%s by=%s", person_id, ",".join(sorted(changes)),
             actor().login)
    return jsonify(_shown(changed))


@bp.post("/people/<person_id>/tokens")
def issue_token(person_id: str) -> tuple[Response, int]:
    """A new API token for an active person; the answer is the only time it is shown."""
    try:
        token_id, token = person.issue_token(current_services(), person_id, by=actor().login)
    except person.NotFound:
        raise ApiError(404, "not_found", "no active person with that id") from None
    log.info("token issued token_id=%s person=%s by=%s", token_id, person_id, actor().login)
    return jsonify(id=token_id, token=token, person_id=person_id), 201


@bp.delete("/tokens/<token_id>")
def revoke_token(token_id: str) -> tuple[str, int]:
    """Revoke a token at once."""
    if not person.revoke_token(current_services(), token_id, by=actor().login):
        raise ApiError(404, "not_found", "no token with that id")
    log.info("token revoked token_id=%s by=%s", token_id, actor().login)
    return "", 204
