"""The admin API's error shape: {"error": {"code", "message", "field"?}} with a 4xx status."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """A request we refuse; raised anywhere under /api and turned into JSON once."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details = details


def invalid(field: str, message: str) -> ApiError:
    """A 400 that names the offending field."""
    return ApiError(400, "invalid_field", message, field)


def error_body(code: str, message: str, field: str | None = None,
               details: list[dict[str, object]] | None = None) -> dict[str, object]:
    err: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    if details:
        err["details"] = details
    return {"error": err}


def _api_error(e: ApiError) -> tuple[Response, int]:
    return jsonify(error_body(e.code, e.message, e.field, e.details)), e.status


def _http_error(e: HTTPException) -> Response | HTTPException:
    """JSON for the API and service endpoints; Twilio webhooks keep plain answers."""
    if request.path.startswith(("/voice/", "/sms/")):
        return e
    code = (e.name or "error").lower().replace(" ", "_")
    response = jsonify(error_body(code, e.description or e.name or "error"))
    response.status_code = e.code or 500
    return response


def register(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
