"""The incident board (/console/): active incidents with their counters and the next update
due, the resolved ones below, and the declare form with its preview."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for

from ivr import current_services, floor, incident, preview, progress
from ivr.console import bp, forms, t

RESOLVED_SHOWN = 20


def declare_body(form: Any) -> dict[str, Any]:
    """The declare form as the body of POST /api/incidents."""
    body: dict[str, Any] = {
        "title": (form.get("title") or "").strip() or None,
        "severity": form.get("severity") or None,
        "status": form.get("status") or "investigating",
        "scope": forms.scope(form),
        "announcement": forms.per_language(form, "announcement"),
        "eta": forms.eta(form),
        "notify": form.get("notify") == "on",
    }
    if form.get("audience"):
        body["audience"] = form["audience"]
    return forms.compact(body, keep=("eta",))


def _board(status: int = 200, form: dict[str, Any] | None = None,
           errors: dict[str, str] | None = None) -> Response:
    svc = current_services()
    resolved = []
    for incident_id in incident.list_ids(svc, active_only=False, limit=RESOLVED_SHOWN * 2):
        doc = incident.load(svc, incident_id)
        if doc["status"] == "resolved":
            resolved.append(doc)
        if len(resolved) >= RESOLVED_SHOWN:
            break
    page = render_template("board.html", active=floor.active_incidents(svc), resolved=resolved,
                           now=svc.now(), local=svc.local, severities=incident.SEVERITIES,
                           statuses=incident.OPEN_STATUSES, audiences=incident.AUDIENCES,
                           form=form if form is not None else {"notify": "on"},
                           errors=errors or {})
    return Response(page, status=status, mimetype="text/html")


@bp.get("/")
def board() -> Response:
    return _board()


@bp.post("/incidents")
def declare() -> Response:
    """Declare from the form: the API's parser and progress.declare, nothing else."""
    svc = current_services()
    body = declare_body(request.form)
    declared, errors = forms.submitted(
        "IncidentNew", body, lambda: incident.parse_new(body, svc),
        lambda fields: progress.declare(svc, fields, by=g.actor.login))
    if declared is not None:
        flash(t("declared"))
        return redirect(url_for("console.incident_page",  # type: ignore[return-value]
                                incident_id=declared[0]["id"]))
    return _board(400, form=forms.values(request.form), errors=errors)


@bp.post("/incidents/preview")
def declare_preview() -> Response:
    """What callers would hear and what the SMS would cost, before declaring anything."""
    svc = current_services()
    body = declare_body(request.form)
    fields, errors = forms.validated("IncidentNew", body, lambda: incident.parse_new(body, svc))
    doc = None
    if fields is not None:
        doc = {**fields, "id": "", "update_seq": 0,
               "next_update_at": incident.first_due(svc, fields)}
    return preview_response(doc, errors)


def preview_response(doc: dict[str, Any] | None, errors: dict[str, str],
                     message: dict[str, str] | None = None) -> Response:
    svc = current_services()
    heard = preview.heard_all(svc, doc) if doc else []
    sms = preview.sms_previews(svc, doc, message=message) if doc else []
    fragment = request.headers.get("X-Requested-With") == "fetch"
    html = render_template("_preview.html" if fragment else "preview_page.html", heard=heard,
                           sms=sms, errors=errors)
    return Response(html, status=200 if doc else 400, mimetype="text/html")
