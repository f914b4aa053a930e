"""Call records for supervisors: the live list with tags, one call's record and 5W1H
context, escalating a call, and the escalation's outcome fed back to whoever raised it."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify, request

from ivr import call, current_services, escalation, keys
from ivr.api import actor, bp, json_body
from ivr.errors import ApiError, invalid
from ivr.services import Services

LIST_MAX = 500
TAG = re.compile(r"^[A-Za-z0-9:_-]{1,80}$")
NAME = re.compile(r"^[^\s:]{1,64}$")


def _view(svc: Services, record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if not k.startswith("esc_")}
    out["escalation"] = escalation.summary(svc, record)
    out.setdefault("context", None)
    return out


def _live_call(svc: Services, call_sid: str) -> dict[str, Any]:
    record = call.get(svc, call_sid) if call_sid.startswith("CA") else None
    if record is None:
        raise ApiError(404, "not_found", f"no call {call_sid[:64]}")
    return record


@bp.get("/calls")
def list_calls() -> Response:
    """Newest first; ?active=1 for calls in progress, ?tag=, ?raised_by= (the calls an
    operator escalated, with their outcome), ?limit=."""
    svc = current_services()
    active = request.args.get("active", "0")
    if active not in ("0", "1"):
        raise invalid("active", "active must be 0 or 1")
    tag = request.args.get("tag")
    if tag is not None and not TAG.match(tag):
        raise invalid("tag", "tag must be letters, digits, ':', '_' or '-'")
    raised_by = request.args.get("raised_by")
    if raised_by is not None and not NAME.match(raised_by):
        raise invalid("raised_by", "raised_by must be a token owner's name")
    limit_text = request.args.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= LIST_MAX:
        raise invalid("limit", f"limit must be a whole number from 1 to {LIST_MAX}")
    index = keys.escalations_raised_by(raised_by) if raised_by else None
    records = call.list_calls(svc, active=active == "1", tag=tag, limit=int(limit_text),
                              index=index)
    return jsonify(calls=[_view(svc, r) for r in records])


@bp.get("/calls/<call_sid>")
def show_call(call_sid: str) -> Response:
    svc = current_services()
    return jsonify(_view(svc, _live_call(svc, call_sid)))


@bp.post("/calls/<call_sid>/escalate")
def escalate(call_sid: str) -> tuple[Response, int]:
    """An operator hands the call up: the SV is rung with the context and the note; a caller
    still waiting is moved into their conference first, and so is one TaskRouter bridged to
    their operator directly, whose operator follows (/voice/agent-rejoin), never left
    behind."""
    svc = current_services()
    body = json_body("Escalate")
    escalation.raise_for(svc, call_sid, reason=body.get("reason", "operator"),
                         note=(body.get("note") or "").strip(), by=actor().login)
    return jsonify(_view(svc, _live_call(svc, call_sid))), 202


@bp.post("/calls/<call_sid>/outcome")
def outcome(call_sid: str) -> Response:
    """The SV records how the escalation ended; the raising operator sees it in their list."""
    svc = current_services()
    body = json_body("Outcome")
    result = body["result"]
    note = (body.get("note") or "").strip()
    _live_call(svc, call_sid)
    if not escalation.record_outcome(svc, call_sid, result=str(result), note=note,
                                     by=actor().login):
        raise ApiError(409, "not_escalated", f"call {call_sid} has no escalation")
    return jsonify(_view(svc, _live_call(svc, call_sid)))
