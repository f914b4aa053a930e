"""Customers: JSON upsert, CSV import, lookup (PRODUCT.md §2, "customers")."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, jsonify, request

from ivr import current_services, customer, schemas, undeliverable
from ivr.api import actor, bp, json_body
from ivr.errors import ApiError, invalid
from ivr.phone import normalize

log = logging.getLogger(__name__)

MAX_LIST = 10_000
"""Customers per PUT; larger lists go through the CSV import, which allows a bigger body."""
ECHO_MAX = 100
"""A PUT answers with the written customers only up to this many."""


def _rejected(e: customer.RecordsRejected, code: str, position: str, what: str) -> ApiError:
    """A 400 listing the first problems, each with its row/index and field."""
    details: list[dict[str, object]] = []
    for err in e.errors:
        item: dict[str, object] = {}
        if err.row is not None:
            item[position] = err.row
        if err.field is not None:
            item["field"] = err.field
        item["message"] = err.message
        details.append(item)
    first = e.errors[0]
    where = f" (first: {position} {first.row})" if first.row is not None else ""
    message = f"{e.count} problem(s) in the {what}{where}; nothing was written"
    return ApiError(400, code, message, first.field, details)


def _customers_json(written: list[customer.Customer]) -> list[dict[str, Any]]:
    opted = customer.opted_out_many(current_services(), [c.phone for c in written])
    return [c.to_json(opted_out=o) for c, o in zip(written, opted, strict=True)]


@bp.put("/customers")
def upsert_customers() -> tuple[Response, int]:
    """Upsert one customer object or a list of them by phone; fields not sent keep their value."""
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict):
        json_body("Customer")
        try:
            updates = [customer.check(body)]
        except customer.ValidationError as e:
            raise invalid(e.field or "body", e.message) from None
    elif isinstance(body, list):
        bad_text = schemas.unspeakable(body)
        if bad_text:
            raise ApiError(400, "invalid_field", bad_text[0].message, bad_text[0].field,
                           errors=[e.to_json() for e in bad_text])
        if len(body) > MAX_LIST:
            raise ApiError(
                400,
                "too_many",
                f"at most {MAX_LIST} customers per request; use "
                "POST /api/customers/import for more",
            )
        try:
            updates = customer.check_many(body)
        except customer.RecordsRejected as e:
            raise _rejected(e, "invalid_items", "index", "list") from None
    else:
        json_body("Customer")  # 415 unless JSON, else 400 naming what is wrong
        raise ApiError(400, "invalid_json", "the body must be a customer object or a list")
    written = customer.upsert_many(current_services(), updates, by=actor().login)
    answer: dict[str, Any] = {"upserted": len(written)}
    if len(written) <= ECHO_MAX:
        answer["customers"] = _customers_json(written)
    log.info("customers upserted count=%d", len(written))
    return jsonify(answer), 200


@bp.post("/customers/import")
def import_customers() -> tuple[Response, int]:
    """Import a CSV of customers all-or-nothing: one bad row and nothing is written."""
    if request.mimetype != "text/csv":
        raise ApiError(415, "unsupported_media_type", "send text/csv (UTF-8)")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "the CSV must be UTF-8")
    # Raise the limit for this request only, before the body is touched.
    request.max_content_length = int(current_app.config["IVR_IMPORT_MAX_BYTES"])
    data = request.get_data(cache=False)
    try:
        updates = customer.parse_csv(data)
    except customer.ValidationError as e:
        raise ApiError(400, "invalid_csv", e.message, e.field) from None
    except customer.RecordsRejected as e:
        raise _rejected(e, "invalid_rows", "row", "file") from None
    written = customer.upsert_many(current_services(), updates, by=actor().login)
    log.info("customers imported count=%d", len(written))
    return jsonify(imported=len(written)), 200


@bp.get("/customers/<phone>")
def show_customer(phone: str) -> Response:
    """One customer by number in any format, with the suppression-list state (`opted_out`)
    and any undeliverable mark (`sms_undeliverable`)."""
    e164 = normalize(phone)
    if e164 is None:
        raise invalid("phone", "phone is not a valid phone number")
    found, opted_out = customer.get(current_services(), e164)
    if found is None:
        raise ApiError(404, "not_found", "no customer with that phone number", "phone")
    mark = undeliverable.get(current_services(), e164)
    return jsonify(found.to_json(opted_out=opted_out, mark=mark))
