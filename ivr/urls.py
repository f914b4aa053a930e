"""Absolute callback URLs outside a request (the worker): PUBLIC_BASE_URL + path + query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode


def public_url(config: Mapping[str, Any], path: str, **query: Any) -> str:
    """Only ASCII ids go in the query, so the URL Twilio signs is the URL we check."""
    base = str(config["PUBLIC_BASE_URL"]).rstrip("/") + path
    return f"{base}?{urlencode(query)}" if query else base
