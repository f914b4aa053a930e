"""Supervisors and their on-call order (PRODUCT.md §2, "supervisors")."""

from __future__ import annotations

from flask import Response, jsonify, request

from ivr import current_services, supervisor
from ivr.api import actor, bp, json_body
from ivr.errors import ApiError, invalid
from ivr.schemas import ROSTER_REASONS
from ivr.supervisor import Supervisor


def _roster_json(sups: list[Supervisor]) -> Response:
    return jsonify(supervisors=[s.to_json() for s in sups])


@bp.get("/supervisors")
def list_supervisors() -> Response:
    """The whole roster, on call or not, in ring order (order, then name)."""
    sups = supervisor.roster(current_services())
    return _roster_json(sups)


@bp.put("/supervisors")
def put_supervisors() -> Response:
    """A JSON list replaces the whole roster atomically; one object upserts that supervisor.

    Either way the answer is the resulting roster in ring order; bad input writes nothing.
    """
    body = json_body("Supervisor", alt="Roster")
    if isinstance(body, list):
        if len(body) > supervisor.MAX_ROSTER:
            raise ApiError(
                400, "too_many", f"a roster holds at most {supervisor.MAX_ROSTER} supervisors"
            )
        sups = supervisor.check_roster(body)
        result = supervisor.replace_roster(current_services(), sups, by=actor().login)
    elif isinstance(body, dict):
        sup = supervisor.check(body)
        try:
            result = supervisor.upsert(current_services(), sup, by=actor().login)
        except supervisor.RosterFull as e:
            raise ApiError(400, "too_many", str(e), "phone") from None
    else:
        raise ApiError(
            400, "invalid_json", "the body must be a supervisor object or a list (the whole roster)"
        )
    return _roster_json(result)


@bp.get("/supervisors/candidates")
def supervisor_candidates() -> Response:
    """Who an escalation for `?reason=` would ring, in order (flows/escalation.yaml ladder)."""
    reason = request.args.get("reason", "").strip()
    if not reason:
        raise invalid("reason", "reason is required, such as ?reason=manager")
    reason = ROSTER_REASONS.get(reason, reason)  # the roster's words name a ladder too
    svc = current_services()
    try:
        supervisor.ladder_steps(svc, reason)
    except ValueError as e:
        raise invalid("reason", str(e)) from None
    picked = supervisor.candidates(svc, reason)
    return jsonify(reason=reason, candidates=[s.to_json() for s in picked])
