"""The admin API's error shape: {"error": {"code", "message", "field"?, "errors"?}}, 4xx."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

HTML_SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}
"""What every HTML page of the service carries: the opt-out page, and Werkzeug's own error
pages (403/404/405 outside /api). No referrer, no caching, no framing, no indexing, nothing
loaded from anywhere."""


class ApiError(Exception):
    """A request we refuse; raised anywhere under /api and turned into JSON once."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 details: list[dict[str, object]] | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details, self.errors = details, errors


class StorageConflict(Exception):
    """Other writers kept changing the same keys; nothing was written (409, send it again)."""


def invalid(field: str, message: str) -> ApiError:
    """A 400 that names the offending field."""
    return ApiError(400, "invalid_field", message, field)


def _printable(text: str) -> str:
    """Text that encodes as UTF-8 (a lone surrogate from the request becomes U+FFFD)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def error_body(code: str, message: str, field: str | None = None,
               details: list[dict[str, object]] | None = None,
               errors: list[dict[str, str]] | None = None) -> dict[str, object]:
    """PRODUCT.md §2's error: {"error": {"code", "message", "field"?, "errors"?}}; `errors`
    lists every bad field ({field, message}) and `field` is the first of them."""
    err: dict[str, object] = {"code": code, "message": _printable(message)}
    if field is not None:
        err["field"] = _printable(field)
    if errors:
        err["errors"] = [{k: _printable(v) for k, v in e.items()} for e in errors]
    if details:
        err["details"] = details
    return {"error": err}


def _api_error(e: ApiError) -> tuple[Response, int]:
    errors = e.errors
    if errors is None and e.status == 400 and e.field is not None:
        errors = [{"field": e.field, "message": e.message}]  # a 400 always lists its fields
    response = jsonify(error_body(e.code, e.message, e.field, e.details, errors))
    if e.status == 429:
        response.headers["Retry-After"] = "900"
    return response, e.status


def _http_error(e: HTTPException) -> Response | HTTPException:
    """JSON for the API and service endpoints; Twilio webhooks keep plain answers."""
    if request.path.startswith(("/voice/", "/sms/")):
        return e
    code = (e.name or "error").lower().replace(" ", "_")
    response = jsonify(error_body(code, e.description or e.name or "error"))
    response.status_code = e.code or 500
    return response


def _conflict(e: StorageConflict) -> tuple[Response, int]:
    return jsonify(error_body("conflict", f"{e}; nothing was written, send it again")), 409


def _storage_down(e: redis.RedisError) -> tuple[Response, int]:
    """Admin calls answer a JSON 503 when Redis is away (voice views answer TwiML instead:
    their blueprint handles it first)."""
    log.warning("redis unavailable path=%s (%s)", request.path, type(e).__name__)
    return jsonify(error_body("storage_unavailable", "Redis is unavailable; send the request "
                                                     "again (writes here are idempotent)")), 503


def _secure_html(response: Response) -> Response:
    """Give an HTML answer the headers it lacks (a page that sets its own keeps them)."""
    if response.mimetype == "text/html":
        for name, value in HTML_SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def register(app: Flask) -> None:
    app.after_request(_secure_html)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(StorageConflict, _conflict)
    app.register_error_handler(redis.RedisError, _storage_down)
    app.register_error_handler(HTTPException, _http_error)
