"""People and their API tokens (/console/people, admin only): add a person, change a role,
deactivate (which ends their sessions and revokes their tokens at once), issue a token
(shown once, on the answer to the form) and revoke one. The same schemas and person.*
calls as /api/people."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for

from ivr import current_services, person
from ivr.console import bp, forms, t
from ivr.errors import ApiError, invalid
from ivr.phone import normalize
from ivr.schemas import ROLES


def _page(status: int = 200, *, form: dict[str, Any] | None = None,
          errors: dict[str, str] | None = None, issued: dict[str, str] | None = None
          ) -> Response:
    svc = current_services()
    people = [(p, person.tokens_of(svc, p.id)) for p in person.list_people(svc)]
    html = render_template("people.html", people=people, roles=ROLES,
                           form=form or {"role": "operator"},
                           errors=errors or {}, issued=issued)
    return Response(html, status=status, mimetype="text/html")


@bp.get("/people")
def people() -> Response:
    return _page()


def _phone(value: Any) -> str | None:
    if not value:
        return None
    e164 = normalize(str(value))
    if e164 is None:
        raise invalid("phone", "phone is not a valid phone number")
    return e164


@bp.post("/people")
def people_create() -> Response:
    """POST /api/people from the form: PersonNew, then person.create."""
    svc = current_services()
    body = forms.compact({k: (request.form.get(k) or "").strip() or None
                          for k in ("login", "name", "role", "phone")})
    if request.form.get("password"):
        body["password"] = request.form["password"]

    def create() -> person.Person:
        try:
            return person.create(svc, login=body["login"], name=body["name"], role=body["role"],
                                 password=body["password"], phone=_phone(body.get("phone")),
                                 by=g.actor.login)
        except person.LoginTaken:
            raise invalid("login", f"the login {body['login']} is already in use") from None

    made, errors = forms.validated("PersonNew", body, create)
    if made is not None:
        flash(t("saved"))
        return redirect(url_for("console.people"))  # type: ignore[return-value]
    values = forms.values(request.form)
    values.pop("password", None)  # never sent back into a page
    return _page(400, form=values, errors=errors)


@bp.post("/people/<person_id>")
def person_edit(person_id: str) -> Response:
    """PATCH /api/people/<id> from a person's row: role and active."""
    svc = current_services()
    body: dict[str, Any] = {"role": request.form.get("role") or None,
                            "active": request.form.get("active") == "on"}
    body = forms.compact(body)

    def update() -> person.Person:
        try:
            return person.update(svc, person_id, body, by=g.actor.login)
        except person.NotFound:
            raise ApiError(404, "not_found", "no person with that id") from None

    changed, errors = forms.validated("PersonPatch", body, update)
    if changed is None:
        return _page(400, errors=errors)
    flash(t("saved"))
    return redirect(url_for("console.people"))  # type: ignore[return-value]


@bp.post("/people/<person_id>/tokens")
def token_issue(person_id: str) -> Response:
    """A new API token, shown on this answer only (the page is not cached, not redirected)."""
    try:
        token_id, token = person.issue_token(current_services(), person_id, by=g.actor.login)
    except person.NotFound:
        raise ApiError(404, "not_found", "no active person with that id") from None
    return _page(issued={"id": token_id, "token": token, "person_id": person_id})


@bp.post("/tokens/<token_id>/revoke")
def token_revoke(token_id: str) -> Response:
    if not person.revoke_token(current_services(), token_id, by=g.actor.login):
        raise ApiError(404, "not_found", "no token with that id")
    flash(t("revoked"))
    return redirect(url_for("console.people"))  # type: ignore[return-value]
