"""Call records for supervisors: the live list with tags, and one call's record."""

from __future__ import annotations

import re

from flask import Response, jsonify, request

from ivr import call, current_services
from ivr.api import bp
from ivr.errors import ApiError, invalid

LIST_MAX = 500
TAG = re.compile(r"^[A-Za-z0-9:_-]{1,80}$")


@bp.get("/calls")
def list_calls() -> Response:
    """Newest first; ?active=1 for calls still in progress, ?tag= to filter, ?limit=."""
    active = request.args.get("active", "0")
    if active not in ("0", "1"):
        raise invalid("active", "active must be 0 or 1")
    tag = request.args.get("tag")
    if tag is not None and not TAG.match(tag):
        raise invalid("tag", "tag must be letters, digits, ':', '_' or '-'")
    limit_text = request.args.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= LIST_MAX:
        raise invalid("limit", f"limit must be a whole number from 1 to {LIST_MAX}")
    records = call.list_calls(current_services(), active=active == "1", tag=tag,
                              limit=int(limit_text))
    return jsonify(calls=records)


@bp.get("/calls/<call_sid>")
def show_call(call_sid: str) -> Response:
    record = call.get(current_services(), call_sid) if call_sid.startswith("CA") else None
    if record is None:
        raise ApiError(404, "not_found", f"no call {call_sid}")
    return jsonify(record)
