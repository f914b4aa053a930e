"""Signing in and out: the person's id and session epoch in a signed, HttpOnly cookie.

person.authenticate checks the password (argon2) and the rate limit per login and per
client address, and answers the same None for every failure, so the page says the same
words for an unknown login, a wrong password and a locked one. Each request reloads the
person: deactivating someone, or changing their password or role, bumps their
session_epoch and ends every session they had at once.
"""

from __future__ import annotations

from flask import Response, redirect, render_template, request, session, url_for

from ivr import current_services, person
from ivr.access import Actor
from ivr.console import bp, t


def current_actor() -> Actor | None:
    """The signed-in person, or None: no session, unknown, deactivated, or an old epoch."""
    person_id = session.get("pid")
    if not isinstance(person_id, str):
        return None
    found = person.get(current_services(), person_id)
    if found is None or not found.active or found.session_epoch != session.get("epoch"):
        session.pop("pid", None)
        return None
    return Actor(found.id, found.login, found.role)


def _next_page() -> str:
    target = request.values.get("next", "")
    if not target.startswith("/console/") or target.startswith("//") or "\\" in target:
        return url_for("console.board")
    return target


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response | str:
    """The sign-in form; on success a fresh session (no fixation) and the page asked for."""
    error = None
    login = ""
    if request.method == "POST":
        login = request.form.get("login", "").strip()[:64]
        password = request.form.get("password", "")[:1024]
        client = request.remote_addr or "-"
        found = person.authenticate(current_services(), login, password, client=client) \
            if login and password else None
        if found is not None:
            chosen = session.get("lang")
            session.clear()
            session.permanent = True
            session.update(pid=found.id, epoch=found.session_epoch)
            if chosen:
                session["lang"] = chosen
            return redirect(_next_page())  # type: ignore[return-value]
        error = t("signin_failed")
    status = 401 if error else 200
    return Response(render_template("signin.html", error=error, login=login,
                                    next=request.values.get("next", "")), status=status,
                    mimetype="text/html")


@bp.post("/signout")
def signout() -> Response:
    chosen = session.get("lang")
    session.clear()
    if chosen:
        session["lang"] = chosen
    return redirect(url_for("console.signin"))  # type: ignore[return-value]
