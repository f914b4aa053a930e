"""One incident (/console/incidents/<id>): edit it, hear what callers hear before saving,
price its SMS, post an update, resolve it, and read its timeline."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for

from ivr import current_services, incident, preview, progress
from ivr.console import bp, forms, t
from ivr.console.board import preview_response
from ivr.services import Services


def local_input(svc: Services, iso: str | None) -> str:
    """A stored UTC time as a datetime-local input's value in IVR_TIMEZONE."""
    moment = svc.local(iso)
    return moment.strftime("%Y-%m-%dT%H:%M") if moment else ""


def edit_form(svc: Services, doc: dict[str, Any]) -> dict[str, Any]:
    """The incident as the edit form's values."""
    scope = doc.get("scope") or {}
    return {
        "title": doc["title"], "severity": doc["severity"], "status": doc["status"],
        "audience": doc["audience"], "eta": local_input(svc, doc.get("eta")),
        "scope_services": " ".join(scope.get("services") or []),
        "scope_regions": " ".join(scope.get("regions") or []),
        "scope_numbers": "\n".join(scope.get("numbers") or []),
        **{f"announcement_{lang}": text for lang, text in (doc.get("announcement") or {}).items()},
    }


def patch_body(svc: Services, doc: dict[str, Any], form: Any) -> dict[str, Any]:
    """The edit form as a PATCH body holding only what changed, so the timeline names the
    fields an SV really edited; an emptied language is null (removed)."""
    before = edit_form(svc, doc)
    body: dict[str, Any] = {}
    for name in ("title", "severity", "status", "audience"):
        if (form.get(name) or "").strip() != str(before.get(name, "")):
            body[name] = (form.get(name) or "").strip() or None
    if (form.get("eta") or "").strip() != before["eta"]:
        body["eta"] = forms.eta(form)
    if any(forms.words(form.get(f"scope_{k}")) != forms.words(before[f"scope_{k}"])
           for k in ("services", "regions", "numbers")):
        body["scope"] = forms.scope(form)
    texts = {lang: (form.get(f"announcement_{lang}") or "").strip() or None
             for lang in ("ja", "en")}
    if any(texts[lang] != before.get(f"announcement_{lang}") for lang in texts):
        body["announcement"] = texts
    return body


def update_body(form: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message": forms.per_language(form, "message")}
    if form.get("status"):
        body["status"] = form["status"]
    if "eta" in form:
        body["eta"] = forms.eta(form)
    return forms.compact(body, keep=("eta",))


def render_page(incident_id: str, *, status: int = 200, edit: dict[str, Any] | None = None,
                update: dict[str, Any] | None = None, resolve: dict[str, Any] | None = None,
                errors: dict[str, dict[str, str]] | None = None) -> Response:
    svc = current_services()
    doc = incident.load(svc, incident_id)
    page = render_template(
        "incident.html", doc=doc, now=svc.now(), local=svc.local,
        heard=preview.heard_all(svc, doc), sms=preview.sms_previews(svc, doc),
        severities=incident.SEVERITIES, statuses=incident.OPEN_STATUSES,
        audiences=incident.AUDIENCES, edit=edit or edit_form(svc, doc),
        update=update or {"status": doc["status"], "eta": local_input(svc, doc.get("eta"))},
        resolve=resolve or {}, errors=errors or {})
    return Response(page, status=status, mimetype="text/html")


@bp.get("/incidents/<incident_id>")
def incident_page(incident_id: str) -> Response:
    return render_page(incident_id)


@bp.post("/incidents/<incident_id>/edit")
def incident_edit(incident_id: str) -> Response:
    """PATCH /api/incidents/<id> from the form: incident.parse_patch, progress.edit."""
    svc = current_services()
    body = patch_body(svc, incident.load(svc, incident_id), request.form)
    done, errors = forms.submitted(
        "IncidentPatch", body, lambda: incident.parse_patch(body, svc),
        lambda changes: progress.edit(svc, incident_id, changes, by=g.actor.login))
    if done is not None:
        flash(t("saved"))
        return _back(incident_id)
    return render_page(incident_id, status=400, edit=forms.values(request.form),
                       errors={"edit": errors})


@bp.post("/incidents/<incident_id>/preview")
def incident_preview(incident_id: str) -> Response:
    """The edit (or update) form applied to a copy of the incident, nothing saved: what a
    caller would hear and what the SMS would cost."""
    svc = current_services()
    doc = incident.load(svc, incident_id)
    message = forms.per_language(request.form, "message") or None
    if message is not None:
        return preview_response(doc, {}, message=message)
    body = patch_body(svc, doc, request.form)
    if not body:
        return preview_response(doc, {})
    changes, errors = forms.validated("IncidentPatch", body,
                                      lambda: incident.parse_patch(body, svc))
    if changes is None:
        return preview_response(None, errors)
    return preview_response(incident.apply_changes(dict(doc), changes), {})


@bp.post("/incidents/<incident_id>/updates")
def incident_update(incident_id: str) -> Response:
    """POST /api/incidents/<id>/updates from the form: the same parser, progress.post_update."""
    svc = current_services()
    body = update_body(request.form)
    done, errors = forms.submitted(
        "IncidentUpdate", body, lambda: incident.parse_update(body, svc),
        lambda update: progress.post_update(svc, incident_id, update, by=g.actor.login))
    if done is not None:
        flash(t("update_posted"))
        return _back(incident_id)
    return render_page(incident_id, status=400, update=forms.values(request.form),
                       errors={"update": errors})


@bp.post("/incidents/<incident_id>/resolve")
def incident_resolve(incident_id: str) -> Response:
    """POST /api/incidents/<id>/resolve from the form: the closing message goes out."""
    svc = current_services()
    body = {"message": forms.per_language(request.form, "message")}
    done, errors = forms.submitted(
        "IncidentResolve", body, lambda: incident.parse_update(body, svc, closing=True),
        lambda update: progress.resolve(svc, incident_id, update, by=g.actor.login))
    if done is not None:
        flash(t("resolved_done"))
        return _back(incident_id)
    return render_page(incident_id, status=400, resolve=forms.values(request.form),
                       errors={"resolve": errors})


def _back(incident_id: str) -> Response:
    return redirect(url_for("console.incident_page",  # type: ignore[return-value]
                            incident_id=incident_id))
