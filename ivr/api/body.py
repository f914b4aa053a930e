"""The request body of an admin call, read once: Flask's request stops here, so the
domain validators (ivr.validate) take plain values."""

from __future__ import annotations

from typing import Any

from flask import Request

from ivr.errors import ApiError


def json_object(req: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/415 saying what is wrong with it."""
    if not req.is_json:
        raise ApiError(415, "unsupported_media_type", "send application/json")
    body = req.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body
