"""Incidents: declare, list, show, edit, post progress, resolve."""

from __future__ import annotations

from flask import Response, jsonify, request

from ivr import current_services, incident, progress
from ivr.api import actor, bp, json_body
from ivr.errors import invalid


@bp.post("/incidents")
def declare() -> tuple[Response, int]:
    """Declare an incident: from now on every matching caller hears its announcement."""
    svc = current_services()
    fields = incident.parse_new(json_body("IncidentNew"), svc)
    doc, sms = progress.declare(svc, fields, by=actor().login)
    return jsonify({**incident.load(svc, doc["id"]), "sms_preview": sms}), 201


@bp.get("/incidents")
def list_incidents() -> Response:
    svc = current_services()
    status = request.args.get("status")
    if status not in (None, "active", "all"):
        raise invalid("status", "status must be active or all")
    ids = incident.list_ids(svc, active_only=status == "active")
    return jsonify(incidents=[incident.load(svc, i) for i in ids])


@bp.get("/incidents/<incident_id>")
def show(incident_id: str) -> Response:
    return jsonify(incident.load(current_services(), incident_id))


@bp.patch("/incidents/<incident_id>")
def edit(incident_id: str) -> Response:
    """Change what callers hear (announcement, eta, status, scope, audience) at once; a new
    severity re-arms the update clock on its cadence."""
    svc = current_services()
    changes = incident.parse_patch(json_body("IncidentPatch"), svc)
    progress.edit(svc, incident_id, changes, by=actor().login)
    return jsonify(incident.load(svc, incident_id))


@bp.post("/incidents/<incident_id>/updates")
def post_update(incident_id: str) -> tuple[Response, int]:
    """A progress update: callers in the queue hear it and the update clock restarts."""
    svc = current_services()
    update = incident.parse_update(json_body("IncidentUpdate"), svc)
    doc, entry, sms = progress.post_update(svc, incident_id, update, by=actor().login)
    return jsonify(update=entry, incident=incident.load(svc, doc["id"]), sms_preview=sms), 201


@bp.post("/incidents/<incident_id>/resolve")
def resolve(incident_id: str) -> Response:
    """Close the incident: callers stop hearing it and the update clock stops."""
    svc = current_services()
    update = incident.parse_update(json_body("IncidentResolve"), svc, closing=True)
    _, sms = progress.resolve(svc, incident_id, update, by=actor().login)
    return jsonify({**incident.load(svc, incident_id), "sms_preview": sms})
