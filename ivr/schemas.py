"""The JSON Schemas of every request body: one source for validation, the API document
(/api/openapi.json, docs/api.md) and the console's forms (docs/decisions.md "API schemas").

`validate(name, body)` returns every problem, not the first: each as FieldError(field,
message), `field` a path such as "title", "scope.numbers[2]" or "[3].phone" (in a list
body). Beyond the schema, every string anywhere in a body is refused when it holds a
character XML 1.0 forbids (controls other than tab/LF/CR, noncharacters such as U+FFFE,
lone surrogates): such text ends up in TwiML, where it breaks the document.
Semantic checks that need Redis or the clock (an ETA's window, a phone number's plan) stay
with the domain modules and name their field the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema

from ivr.access import ROLES
from ivr.flows import REASONS

SEVERITIES = ("critical", "major", "minor")
OPEN_STATUSES = ("investigating", "identified", "monitoring")
AUDIENCES = ("all", "affected")
LANGS = ("ja", "en")
SKILLS = ("general", "billing", "technical")
ROSTER_REASONS = {"general": "operator", "billing": "money", "technical": "technical"}
"""The roster's words an operator may give as an escalation reason -> the ladder they ring
(flows/escalation.yaml): "general" is the ladder of an operator's plain request."""
ESCALATE_REASONS = tuple(dict.fromkeys((*REASONS, *ROSTER_REASONS)))
OUTCOMES = ("resolved", "callback", "unresolved", "transferred")
ANNOUNCEMENT_MAX = 1000
LABEL_MAX = 64
LOGIN = r"^[a-z0-9][a-z0-9._-]{1,31}$"
PASSWORD_MIN = 12

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]; the
# noncharacters (U+FDD0-FDEF and the last two of every plane) are refused as well.
_XML_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(1, 17))
    + "]")


def xml_forbidden(text: str) -> bool:
    """True when `text` holds a character XML 1.0 does not allow (or a noncharacter)."""
    return _XML_FORBIDDEN.search(text) is not None


def _text(max_len: int, **extra: Any) -> dict[str, Any]:
    """A non-blank string of at most `max_len` characters."""
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": r"\S", **extra}


_LABEL = {"type": "string", "minLength": 1, "maxLength": LABEL_MAX,
          "pattern": r"^\s*[^\s:;|]+\s*$"}
_ETA = {"type": ["string", "null"], "maxLength": 40,
        "description": "ISO-8601 time; without an offset it is IVR_TIMEZONE's local time; "
                       "null is 確認中. From the declaration to one year ahead.",
        "examples": ["2026-12-04T15:30:00+09:00"]}


def _per_language(item: dict[str, Any], *, nullable: bool = False) -> dict[str, Any]:
    value = {**item, "type": ["string", "null"]} if nullable else item
    return {"type": "object", "additionalProperties": False,
            "properties": {lang: value for lang in LANGS},
            "description": "per language: ja, en" + (" (null removes one)" if nullable else "")}


_ANNOUNCEMENT = {**_per_language(_text(ANNOUNCEMENT_MAX)), "minProperties": 1}
_RECORDINGS = _per_language({"type": "string", "maxLength": 500, "pattern": "^https://"})
_SCOPE = {
    "type": ["object", "null"], "additionalProperties": False,
    "properties": {
        "services": {"type": "array", "maxItems": 200, "items": _LABEL},
        "regions": {"type": "array", "maxItems": 200, "items": _LABEL},
        "numbers": {"type": "array", "maxItems": 10_000, "items": _text(32)},
    },
}
_MESSAGE = {"oneOf": [_text(ANNOUNCEMENT_MAX),
                      {**_per_language(_text(ANNOUNCEMENT_MAX), nullable=True),
                       "minProperties": 1}],
            "description": "one text for every language, or per language"}
_PHONE = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S",
          "description": "a phone number, E.164 or as written in Japan",
          "examples": ["+819012345678", "090-1234-5678"]}
_INCIDENT_FIELDS: dict[str, Any] = {
    "title": _text(200, examples=["メール配信の遅延"]),
    "severity": {"enum": list(SEVERITIES)},
    "status": {"enum": list(OPEN_STATUSES)},
    "scope": _SCOPE,
    "audience": {"enum": list(AUDIENCES)},
    "announcement": _ANNOUNCEMENT,
    "recordings": _RECORDINGS,
    "eta": _ETA,
    "notify": {"type": "boolean"},
}
_PERSON_FIELDS: dict[str, Any] = {
    "login": {"type": "string", "pattern": LOGIN, "maxLength": 32,
              "description": "lower-case letters, digits, '.', '_', '-'; 2-32 characters"},
    "name": _text(100, examples=["山田太郎"]),
    "role": {"enum": list(ROLES)},
    "password": {"type": "string", "minLength": PASSWORD_MIN, "maxLength": 200,
                 "writeOnly": True, "description": "write-only; at least 12 characters"},
    "phone": {**_PHONE, "type": ["string", "null"]},
    "active": {"type": "boolean"},
}
_SUPERVISOR = {
    "type": "object", "additionalProperties": False,
    "required": ["phone", "name", "skills", "level", "on_call", "order"],
    "properties": {
        "phone": _PHONE, "name": _text(100, examples=["佐藤花子"]),
        "skills": {"type": "array", "minItems": 1, "maxItems": 6,
                   "items": {"enum": list(SKILLS)}},
        "level": {"enum": [2, 3], "description": "2 senior operator, 3 supervisor"},
        "on_call": {"type": "boolean"},
        "order": {"type": "integer", "minimum": 0, "maximum": 9999},
        "lang": {"enum": list(LANGS)},
    },
}
def _any_case(*words: str) -> dict[str, Any]:
    """One of `words`, in any case (a CSV says "VIP"), as a pattern."""
    alternatives = "|".join("".join(f"[{c.lower()}{c.upper()}]" for c in w) for w in words)
    return {"type": "string", "pattern": rf"^\s*({alternatives})\s*$",
            "description": " | ".join(words) + " (any case)"}


_CUSTOMER = {
    "type": "object", "additionalProperties": False, "required": ["phone"],
    "properties": {
        "phone": _PHONE,
        "name": {"type": ["string", "null"], "maxLength": 200, "examples": ["鈴木一郎"]},
        "account_id": {"type": ["string", "null"], "maxLength": 100},
        "tier": _any_case("standard", "vip"),
        "services": {"type": ["array", "null"], "maxItems": 50, "items": _LABEL},
        "region": {**_LABEL, "type": ["string", "null"]},
        "language": _any_case(*LANGS),
        "sms_opt_in": {"type": "boolean"},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "IncidentNew": {
        "type": "object", "additionalProperties": False,
        "required": ["title", "severity", "announcement"],
        "properties": _INCIDENT_FIELDS,
        "examples": [{"title": "メール配信の遅延", "severity": "major",
                      "scope": {"services": ["mail"], "regions": [], "numbers": []},
                      "audience": "affected",
                      "announcement": {"ja": "現在、メールの配信が遅れております。",
                                       "en": "Email delivery is delayed."},
                      "eta": "2026-12-04T15:30:00+09:00", "notify": True}],
    },
    "IncidentPatch": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {k: v for k, v in _INCIDENT_FIELDS.items() if k != "notify"}
        | {"announcement": _per_language(_text(ANNOUNCEMENT_MAX), nullable=True),
           "recordings": _per_language(_RECORDINGS["properties"]["ja"], nullable=True)},
        "examples": [{"status": "identified", "eta": "2026-12-04T16:00:00+09:00"}],
    },
    "IncidentUpdate": {
        "type": "object", "additionalProperties": False, "required": ["message"],
        "properties": {"message": _MESSAGE, "eta": _ETA,
                       "status": {"enum": list(OPEN_STATUSES)}},
        "examples": [{"message": {"ja": "原因を特定し、復旧作業を進めております。"},
                      "status": "identified"}],
    },
    "IncidentResolve": {
        "type": "object", "additionalProperties": False, "required": ["message"],
        "properties": {"message": _MESSAGE},
        "examples": [{"message": {"ja": "メールの配信は復旧いたしました。"}}],
    },
    "Escalate": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "reason": {"enum": list(ESCALATE_REASONS),
                       "description": "the roster's words (general, billing, technical) or the "
                                      "caller-side ones (manager, anger, money, repeat, "
                                      "technical, operator)"},
            "note": _text(500, examples=["返金のご相談です"]),
        },
        "examples": [{"reason": "billing", "note": "返金のご相談です"}],
    },
    "Outcome": {
        "type": "object", "additionalProperties": False, "required": ["result"],
        "properties": {"result": {"enum": list(OUTCOMES)},
                       "note": _text(1000, examples=["返金手続きをご案内しました"])},
        "examples": [{"result": "resolved", "note": "返金手続きをご案内しました"}],
    },
    "Supervisor": {**_SUPERVISOR, "examples": [
        {"phone": "+819012345678", "name": "佐藤花子", "skills": ["general", "billing"],
         "level": 3, "on_call": True, "order": 1, "lang": "ja"}]},
    "Roster": {"type": "array", "maxItems": 500, "items": _SUPERVISOR},
    "Customer": {**_CUSTOMER, "examples": [
        {"phone": "+819012345678", "name": "鈴木一郎", "tier": "vip", "services": ["mail"],
         "region": "tokyo", "language": "ja", "sms_opt_in": True}]},
    "CustomerList": {"type": "array", "maxItems": 10_000, "items": _CUSTOMER},
    "PersonNew": {
        "type": "object", "additionalProperties": False,
        "required": ["login", "name", "role", "password"],
        "properties": _PERSON_FIELDS,
        "examples": [{"login": "yamada", "name": "山田太郎", "role": "operator",
                      "password": "とても長い合言葉です12", "phone": "+819012345678"}],
    },
    "PersonPatch": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": _PERSON_FIELDS,
        "examples": [{"active": False}],
    },
}


@dataclass(frozen=True)
class FieldError:
    """One bad field: its path in the body and what is wrong, in words."""

    field: str
    message: str
    code: str = "invalid_field"
    """The error code when this is the first problem: invalid_json (the body is not of the
    right kind at all), too_many (a list too long), else invalid_field."""

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


_VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _explain(err: jsonschema.ValidationError) -> Iterator[FieldError]:
    field = _path(err.absolute_path)
    where = field or "body"
    kind, value = err.validator, err.validator_value
    if kind == "required":
        missing = [p for p in value if isinstance(err.instance, dict) and p not in err.instance]
        for name in missing:
            yield FieldError(_join(field, name), f"{_join(field, name)} is required")
    elif kind == "additionalProperties":
        allowed = set(err.schema.get("properties", {}))
        for name in err.instance:
            if name not in allowed:
                yield FieldError(_join(field, str(name)),
                                 f"unknown field {_join(field, str(name))}")
    elif kind == "enum":
        yield FieldError(where, f"{where} must be one of {', '.join(map(str, value))}")
    elif kind == "type":
        kinds = value if isinstance(value, list) else [value]
        yield FieldError(where, f"{where} must be {' or '.join(map(_a, kinds))}",
                         "invalid_json" if not field else "invalid_field")
    elif kind in ("minLength", "pattern") and isinstance(err.instance, str) and (
            not err.instance.strip()):
        yield FieldError(where, f"{where} must be a non-empty string")
    elif kind == "minLength":
        yield FieldError(where, f"{where} must be at least {value} characters")
    elif kind == "maxLength":
        yield FieldError(where, f"{where} is longer than {value} characters")
    elif kind == "pattern":
        yield FieldError(where, f"{where} has the wrong form" + _pattern_hint(value))
    elif kind in ("maxItems", "minItems"):
        word = "at most" if kind == "maxItems" else "at least"
        yield FieldError(where, f"{where} must have {word} {value} items",
                         "too_many" if kind == "maxItems" and not field else "invalid_field")
    elif kind == "minProperties":
        yield FieldError(where, f"{where} must give at least one field")
    elif kind in ("minimum", "maximum"):
        yield FieldError(where, f"{where} must be {'at least' if kind == 'minimum' else 'at most'}"
                                f" {value}")
    elif kind == "oneOf" and isinstance(err.instance, (dict, str)) and err.context:
        # explain against the branch of the instance's own kind (the per-language object)
        branch = 1 if isinstance(err.instance, dict) else 0
        subs = [e for e in err.context if e.relative_schema_path[0] == branch]
        for sub in subs or err.context[:1]:
            yield from _explain(sub)
    elif kind == "oneOf":
        yield FieldError(where, f"{where} must be a non-empty string or an object per "
                                "language, such as {\"ja\": \"…\"}")
    else:
        yield FieldError(where, f"{where} is not valid: {err.message[:200]}")


def _a(kind: str) -> str:
    return {"object": "an object", "array": "a list", "string": "a string", "null": "null",
            "boolean": "true or false", "integer": "a whole number",
            "number": "a number"}.get(kind, kind)


def _pattern_hint(pattern: str) -> str:
    if pattern == LOGIN:
        return " (lower-case letters, digits, '.', '_', '-'; 2-32 characters)"
    if pattern == "^https://":
        return " (an https URL)"
    if "|" in pattern:
        return " (no spaces, ':', ';' or '|')"
    return ""


def _bad_strings(value: Any, path: str) -> Iterator[FieldError]:
    if isinstance(value, str):
        if xml_forbidden(value):
            where = path or "body"
            yield FieldError(where, f"{where} holds a control character, a noncharacter or a "
                                    "lone surrogate, which cannot be spoken or sent")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _bad_strings(k, _join(path, str(k)) if not xml_forbidden(str(k))
                                    else path)
            yield from _bad_strings(v, _join(path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _bad_strings(v, f"{path}[{i}]")


def unspeakable(body: Any) -> list[FieldError]:
    """Only the strings of `body` (anywhere in it) that hold characters XML forbids: for
    bodies whose other checks stay with the domain (a customer list reports per index)."""
    return list(_bad_strings(body, ""))


def validate(schema_name: str, body: Any) -> list[FieldError]:
    """Every problem of `body` against the named schema, in the schema's field order, then
    any string holding a character XML forbids; [] when the body is good."""
    validator = _VALIDATORS[schema_name]
    order = list(SCHEMAS[schema_name].get("properties", {}))
    found: list[FieldError] = []
    for err in validator.iter_errors(body):
        for problem in _explain(err):
            if problem not in found:
                found.append(problem)

    def position(e: FieldError) -> tuple[int, str]:
        top = re.split(r"[.\[]", e.field, maxsplit=1)[0]
        return (order.index(top) if top in order else len(order), e.field)

    found.sort(key=position)
    named = {e.field for e in found}
    found += [e for e in _bad_strings(body, "") if e.field not in named]
    return found
