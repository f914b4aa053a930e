"""Small checks for admin JSON input; each failure names the field it is about."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ivr.errors import invalid


def only_fields(body: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    """Refuse unknown fields, so a typo ("severty") is not silently ignored."""
    allowed = set(allowed)
    for name in body:
        if name not in allowed:
            raise invalid(prefix + str(name), f"unknown field {prefix}{name}")


def text(body: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 200,
         field: str | None = None) -> str | None:
    field = field or name
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise invalid(field, f"{field} is longer than {max_len} characters")
    return value.strip()


def choice(body: Mapping[str, Any], name: str, options: Iterable[str], *,
           required: bool = True, default: str | None = None, field: str | None = None
           ) -> str | None:
    field = field or name
    value = body.get(name, default)
    if value is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    options = tuple(options)
    if value not in options:
        raise invalid(field, f"{field} must be one of {', '.join(options)}")
    return str(value)


def boolean(body: Mapping[str, Any], name: str, default: bool, field: str | None = None) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(field or name, f"{field or name} must be true or false")
    return value


def string_list(value: Any, field: str, *, max_items: int = 200, max_len: int = 100,
                forbidden: re.Pattern[str] | None = None) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max_items:
        raise invalid(field, f"{field} must be a list of at most {max_items} strings")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item) > max_len:
            raise invalid(f"{field}[{i}]", f"{field}[{i}] must be a non-empty string of at "
                                           f"most {max_len} characters")
        if forbidden is not None and forbidden.search(item.strip()):
            raise invalid(f"{field}[{i}]", f"{field}[{i}] may not contain spaces, ':', ';' "
                                           "or '|'")
        if item.strip() not in out:
            out.append(item.strip())
    return out


def timestamp(value: Any, field: str, tz: ZoneInfo) -> datetime | None:
    """ISO-8601 to aware UTC; a time without offset is local time in IVR_TIMEZONE."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise invalid(field, f"{field} must be an ISO-8601 time or null")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, f"{field} must be an ISO-8601 time or null") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.astimezone(ZoneInfo("UTC"))
    except OverflowError:  # 0001-01-01T08:00+09:00 is before year 1 in UTC
        raise invalid(field, f"{field} is out of range") from None
