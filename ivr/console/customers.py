"""Customers (/console/customers): look up one number and its opt-out state; upload a CSV,
all-or-nothing, with the per-row error report of POST /api/customers/import."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, flash, redirect, render_template, request, url_for

from ivr import current_services, customer
from ivr.console import bp, t
from ivr.phone import normalize

ROWS_SHOWN = 100


def _page(status: int = 200, **context: Any) -> Response:
    html = render_template("customers.html", **{"phone": "", "found": None, "looked_up": False,
                                                "row_errors": [], "file_error": None,
                                                **context})
    return Response(html, status=status, mimetype="text/html")


@bp.get("/customers")
def customers() -> Response:
    """The look-up form; with ?phone= the customer, or that there is none."""
    raw = (request.args.get("phone") or "").strip()[:64]
    if not raw:
        return _page()
    phone = normalize(raw)
    if phone is None:
        return _page(400, phone=raw, lookup_error=t("bad_phone"))
    found, opted_out = customer.get(current_services(), phone)
    return _page(phone=raw, looked_up=True,
                 found=found.to_json(opted_out=opted_out) if found else None,
                 opted_out=opted_out)


@bp.post("/customers/import")
def customers_import() -> Response:
    """The same parse and upsert as POST /api/customers/import: one bad row and nothing is
    written; the report lists each row's problems."""
    request.max_content_length = int(current_app.config["IVR_IMPORT_MAX_BYTES"])
    upload = request.files.get("csv")
    if upload is None or not upload.filename:
        return _page(400, file_error=t("csv_missing"))
    try:
        updates = customer.parse_csv(upload.read())
    except customer.ValidationError as e:
        return _page(400, file_error=e.message)
    except customer.RecordsRejected as e:
        rows = [{"row": err.row, "field": err.field, "message": err.message}
                for err in e.errors[:ROWS_SHOWN]]
        return _page(400, row_errors=rows, rejected=e.count)
    written = customer.upsert_many(current_services(), updates)
    flash(t("imported", n=len(written)))
    return redirect(url_for("console.customers"))  # type: ignore[return-value]
