"""Calls and escalations: one call's page (its record, 5W1H and escalation; the SV records
the outcome there) and the operator's own page (/console/me: the escalations I raised,
their outcome and the SV's note)."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for

from ivr import call, current_services, escalation, keys
from ivr.console import bp, forms, t
from ivr.errors import ApiError
from ivr.schemas import ESCALATE_REASONS, OUTCOMES

MINE_SHOWN = 100


def _record(call_sid: str) -> dict[str, Any]:
    record = call.get(current_services(), call_sid) if call_sid.startswith("CA") else None
    if record is None:
        raise ApiError(404, "not_found", f"no call {call_sid[:64]}")
    record["escalation"] = escalation.summary(current_services(), record)
    return record


def _page(call_sid: str, *, status: int = 200, form: dict[str, Any] | None = None,
          errors: dict[str, str] | None = None) -> Response:
    svc = current_services()
    html = render_template("call.html", record=_record(call_sid), outcomes=OUTCOMES,
                           reasons=ESCALATE_REASONS,
                           form=form or {}, errors=errors or {}, local=svc.local)
    return Response(html, status=status, mimetype="text/html")


@bp.get("/calls/<call_sid>")
def call_page(call_sid: str) -> Response:
    return _page(call_sid)


@bp.post("/calls/<call_sid>/outcome")
def call_outcome(call_sid: str) -> Response:
    """The SV's word on an escalation, shown to the operator who raised it."""
    svc = current_services()
    _record(call_sid)
    body = forms.compact({"result": request.form.get("result") or None,
                          "note": request.form.get("note") or None})
    parsed, errors = forms.validated(
        "Outcome", body, lambda: (str(body["result"]), str(body.get("note") or "").strip()))
    if parsed is not None:
        result, note = parsed
        if not escalation.record_outcome(svc, call_sid, result=result, note=note,
                                         by=g.actor.login):
            raise ApiError(409, "not_escalated", f"call {call_sid} has no escalation")
        flash(t("saved"))
        return redirect(url_for("console.call_page",  # type: ignore[return-value]
                                call_sid=call_sid))
    return _page(call_sid, status=400, form=forms.values(request.form), errors=errors)


@bp.get("/me")
def my_escalations() -> str:
    """The escalations the signed-in person raised, newest first, with their outcome."""
    svc = current_services()
    records = call.list_calls(svc, active=False, tag=None, limit=MINE_SHOWN,
                              index=keys.escalations_raised_by(g.actor.login))
    rows = [{**r, "escalation": escalation.summary(svc, r)} for r in records]
    return render_template("me.html", rows=rows, local=svc.local)


@bp.post("/calls/<call_sid>/escalate")
def call_escalate(call_sid: str) -> Response:
    """POST /api/calls/<sid>/escalate from the call page: the Escalate schema, then
    escalation.raise_for with the signed-in operator as the one who raised it."""
    svc = current_services()
    body = forms.compact({"reason": request.form.get("reason") or None,
                          "note": (request.form.get("note") or "").strip() or None})
    def raise_it() -> bool:
        escalation.raise_for(svc, call_sid, reason=str(body.get("reason", "operator")),
                             note=str(body.get("note") or ""), by=g.actor.login)
        return True

    done, errors = forms.validated("Escalate", body, raise_it)
    if done:
        flash(t("escalated"))
        return redirect(url_for("console.call_page",  # type: ignore[return-value]
                                call_sid=call_sid))
    return _page(call_sid, status=400, form=forms.values(request.form), errors=errors)
