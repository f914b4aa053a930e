"""The on-call roster (/console/supervisors): who is on call, in which order, with which
skills and level, and whom each escalation reason would ring now; admins change one
supervisor at a time through the same check and upsert as PUT /api/supervisors."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for

from ivr import current_services, supervisor
from ivr.console import bp, forms, t
from ivr.errors import ApiError
from ivr.flows import REASONS
from ivr.schemas import SKILLS


def _page(status: int = 200, form: dict[str, Any] | None = None,
          errors: dict[str, str] | None = None) -> Response:
    svc = current_services()
    everyone = supervisor.roster(svc)
    ringing = {reason: [s.name for s in supervisor.candidates(svc, reason, everyone)]
               for reason in REASONS}
    html = render_template("roster.html", roster=everyone, ringing=ringing, skills=SKILLS,
                           form=form or {"on_call": "on", "level": "2"}, errors=errors or {})
    return Response(html, status=status, mimetype="text/html")


@bp.get("/supervisors")
def roster() -> Response:
    return _page()


def supervisor_body(form: Any) -> dict[str, Any]:
    """The form as one supervisor object of PUT /api/supervisors."""
    def number(name: str) -> Any:
        value = (form.get(name) or "").strip()
        return int(value) if value.isdigit() else value or None

    return forms.compact({"name": (form.get("name") or "").strip() or None,
                          "phone": (form.get("phone") or "").strip() or None,
                          "skills": form.getlist("skills"), "level": number("level"),
                          "on_call": form.get("on_call") == "on", "order": number("order")})


@bp.post("/supervisors")
def roster_save() -> Response:
    svc = current_services()
    body = supervisor_body(request.form)
    sup, errors = forms.validated("Supervisor", body, lambda: supervisor.check(body))
    if sup is not None:
        try:
            supervisor.upsert(svc, sup)
        except supervisor.RosterFull as e:
            raise ApiError(400, "too_many", str(e), "phone") from None
        flash(t("saved"))
        return redirect(url_for("console.roster"))  # type: ignore[return-value]
    return _page(400, form=forms.values(request.form), errors=errors)
