"""Load flows/*.yaml and refuse to start on a bad value, naming the file, line, key and fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ivr.intent_schema import SCHEMA as INTENTS_SCHEMA
from ivr.lang import LANGS

SEVERITIES = ("critical", "major", "minor")

_VOICE = {
    "type": "object",
    "required": ["tts_language", "voice", "fallback_voice"],
    "additionalProperties": False,
    "properties": {
        "tts_language": {"enum": ["ja-JP", "en-US", "en-GB", "en-AU"],
                         "description": "a Twilio <Say> language code such as ja-JP or en-US"},
        "voice": {"type": "string", "minLength": 1,
                  "description": "a Twilio voice name such as Polly.Mizuki"},
        "fallback_voice": {"type": "string", "minLength": 1,
                           "description": "a basic voice that /voice/fallback uses, such as "
                                          "Google.ja-JP-Standard-A"},
    },
}

# A caller hears at most this many announcements in full per answer. With ANNOUNCEMENT_MAX
# (1,000) characters each, escaped at worst to 5 bytes a character ("&amp;"), five take
# 25 kB: every /voice/incoming answer stays under Twilio's 64 kB (error 11750).
ANNOUNCED_IN_FULL_MAX = 5

SCHEMAS: dict[str, dict[str, Any]] = {
    "call.yaml": {
        "type": "object",
        "required": ["default_language", "languages", "queue", "gather", "menu", "agent",
                     "announcements"],
        "additionalProperties": False,
        "properties": {
            "default_language": {"enum": list(LANGS),
                                 "description": "the language for unknown callers: ja or en"},
            "languages": {
                "type": "object", "required": list(LANGS), "additionalProperties": False,
                "properties": {lang: _VOICE for lang in LANGS},
                "description": "one entry per language: ja and en",
            },
            "queue": {
                "type": "object", "required": ["name", "hold_music"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$",
                             "description": "a Twilio queue name of letters, digits, - or _"},
                    "hold_music": {"type": "string", "pattern": "^https?://",
                                   "description": "an http(s) URL of an audio file"},
                },
            },
            "gather": {
                "type": "object",
                "required": ["enabled", "timeout", "speech_timeout"],
                "additionalProperties": False,
                "properties": {
                    "enabled": {"type": "boolean", "description": "true or false"},
                    "timeout": {"type": "integer", "minimum": 1, "maximum": 30,
                                "description": "seconds to wait for a key, 1 to 30"},
                    "speech_timeout": {
                        "oneOf": [{"const": "auto"}, {"type": "integer", "minimum": 1}],
                        "description": "auto, or whole seconds of silence"},
                    "speech_model": {
                        "type": ["string", "null"],
                        "description": "a Twilio speechModel, or null for the default",
                    },
                },
            },
            "menu": {
                "type": "object",
                "additionalProperties": False,
                "patternProperties": {"^[0-9]$": {"type": "string", "pattern": "^[a-z_]+$"}},
                "description": "single digit keys mapping to a purpose name such as incident",
            },
            "announcements": {
                "type": "object", "required": ["in_full", "more_key"],
                "additionalProperties": False,
                "properties": {
                    "in_full": {"type": "integer", "minimum": 1,
                                "maximum": ANNOUNCED_IN_FULL_MAX,
                                "description": "how many incidents a caller hears in full "
                                               "before the menu, 1 to "
                                               f"{ANNOUNCED_IN_FULL_MAX}"},
                    "more_key": {"type": "string", "pattern": "^[0-9]$",
                                 "description": "one digit, not used by the menu, that plays "
                                                "the next incidents"},
                },
            },
            "agent": {
                "type": "object", "required": ["idle_pause", "allowed_from"],
                "additionalProperties": False,
                "properties": {
                    "allowed_from": {
                        "type": "array", "items": {"type": "string", "minLength": 1},
                        "description": "a list of operator numbers (E.164) or client "
                                       "identities (client:name); empty lets anyone in",
                    },
                    "idle_pause": {"type": "integer", "minimum": 1, "maximum": 60,
                                   "description": "seconds the operator line waits before "
                                                  "looking again for a caller, 1 to 60"},
                },
            },
        },
    },
    "incidents.yaml": {
        "type": "object",
        "required": ["cadence_minutes"],
        "additionalProperties": False,
        "properties": {
            "cadence_minutes": {
                "type": "object",
                "required": list(SEVERITIES),
                "additionalProperties": False,
                "properties": {
                    "critical": {"type": "integer", "minimum": 30, "maximum": 60,
                                 "description": "30 to 60 minutes for an important incident"},
                    "major": {"type": "integer", "minimum": 30, "maximum": 60,
                              "description": "30 to 60 minutes for an important incident"},
                    "minor": {"type": "integer", "minimum": 120, "maximum": 180,
                              "description": "120 to 180 minutes for an ordinary incident"},
                },
            },
        },
    },
}


_STEPS = {
    "type": "array", "minItems": 1,
    "items": {
        "type": "object", "required": ["skill", "level"], "additionalProperties": False,
        "properties": {
            "skill": {"enum": ["general", "billing", "technical"],
                      "description": "general, billing or technical"},
            "level": {"enum": [2, 3], "description": "2 (senior operator) or 3 (supervisor)"},
        },
    },
    "description": "a list of steps such as {skill: general, level: 3}",
}
REASONS = ("manager", "anger", "repeat", "money", "technical", "operator")
SCHEMAS["escalation.yaml"] = {
    "type": "object",
    "required": ["repeat", "ladder", "ring_timeout", "join_timeout"],
    "additionalProperties": False,
    "properties": {
        "repeat": {
            "type": "object", "required": ["threshold", "window_hours"],
            "additionalProperties": False,
            "properties": {
                "threshold": {"type": "integer", "minimum": 2, "maximum": 20,
                              "description": "the call count that makes a repeat caller, 2-20"},
                "window_hours": {"type": "integer", "minimum": 1, "maximum": 168,
                                 "description": "hours the calls are counted over, 1-168"},
            },
        },
        "ladder": {
            "type": "object", "required": list(REASONS), "additionalProperties": False,
            "properties": {reason: _STEPS for reason in REASONS},
            "description": "one entry per reason: " + ", ".join(REASONS),
        },
        "ring_timeout": {"type": "integer", "minimum": 5, "maximum": 60,
                         "description": "seconds an SV's phone rings, 5-60"},
        "join_timeout": {"type": "integer", "minimum": 20, "maximum": 600,
                         "description": "seconds before the watchdog moves on, 20-600"},
    },
}


_CLOCK = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
          "description": "a 24-hour local time in quotes, such as \"21:00\""}
SCHEMAS["sms.yaml"] = {
    "type": "object",
    "required": ["sender_name", "quiet_hours", "max_segments", "batch_size",
                 "reminder_minutes", "settle_after_seconds", "sweep_after_minutes",
                 "undeliverable_days"],
    "additionalProperties": False,
    "properties": {
        "sender_name": {"type": "string", "minLength": 1, "maxLength": 20,
                        "description": "a short sender name, 1-20 characters"},
        "quiet_hours": {
            "type": "object", "required": ["start", "end"], "additionalProperties": False,
            "properties": {"start": _CLOCK, "end": _CLOCK},
        },
        "max_segments": {"type": "integer", "minimum": 1, "maximum": 10,
                         "description": "a whole number of segments, 1-10"},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000,
                       "description": "recipients per job, 1-1000"},
        "reminder_minutes": {"type": "integer", "minimum": 1, "maximum": 60,
                             "description": "minutes before the due time, 1-60"},
        "settle_after_seconds": {"type": "integer", "minimum": 15, "maximum": 3600,
                                 "description": "seconds, 15-3600 (more than Twilio's "
                                                "request timeout)"},
        "sweep_after_minutes": {"type": "integer", "minimum": 1, "maximum": 120,
                                "description": "minutes, 1-120"},
        "undeliverable_days": {"type": "integer", "minimum": 1, "maximum": 365,
                               "description": "days, 1-365"},
    },
}


SCHEMAS["intents.yaml"] = INTENTS_SCHEMA


class FlowError(RuntimeError):
    """A flows/ file that the service must not start with."""


@dataclass(frozen=True)
class Voice:
    tts_language: str
    voice: str
    fallback_voice: str


@dataclass(frozen=True)
class Flows:
    """The validated flows/ files; read once at start, never per request."""

    call: dict[str, Any]
    incidents: dict[str, Any]
    escalation: dict[str, Any]
    sms: dict[str, Any]

    def voice(self, lang: str) -> Voice:
        entry = self.call["languages"].get(lang) or self.call["languages"]["ja"]
        return Voice(**entry)

    @property
    def default_language(self) -> str:
        return str(self.call["default_language"])

    def operator_allowed(self, raw_from: str, phone: str | None) -> bool:
        allowed = self.call["agent"]["allowed_from"]
        return not allowed or raw_from in allowed or (phone is not None and phone in allowed)

    @property
    def queue_name(self) -> str:
        return str(self.call["queue"]["name"])

    def cadence(self, severity: str) -> timedelta:
        return timedelta(minutes=int(self.incidents["cadence_minutes"][severity]))


def _line_of(node: yaml.Node | None, path: list[Any]) -> int | None:
    """The 1-based line in the YAML source of the key at `path`, or of its nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        child, at = None, None
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is not None:
                child, at = pair[1], pair[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = at = node.value[part] if part < len(node.value) else None
        if child is None or at is None:
            break
        node, line = child, at.start_mark.line + 1
    return line


def _duplicate_key(node: yaml.Node | None, at: tuple[str, ...] = ()
                   ) -> tuple[str, int, int] | None:
    """The first key written twice in one mapping: (dotted key, first line, second line).
    YAML loaders keep the last one silently, so an edited copy of a block would quietly undo
    the original; ops must hear about it."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name, line = str(key.value), key.start_mark.line + 1
            if name in seen:
                return ".".join((*at, name)), seen[name], line
            seen[name] = line
            found = _duplicate_key(value, (*at, name))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, (*at, str(i)))
            if found:
                return found
    return None


def _offending_key(err: jsonschema.ValidationError) -> str | None:
    """The property a `required` or `additionalProperties` error is really about."""
    if not isinstance(err.instance, dict) or not isinstance(err.schema, dict):
        return None
    if err.validator == "required" and isinstance(err.validator_value, list):
        return next((str(k) for k in err.validator_value if k not in err.instance), None)
    if err.validator == "additionalProperties":
        known = err.schema.get("properties", {})
        patterns = err.schema.get("patternProperties", {})
        return next((str(k) for k in err.instance if k not in known
                     and not any(re.search(p, str(k)) for p in patterns)), None)
    return None


def load_file(path: Path, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse and validate one file; the first problem found becomes a FlowError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FlowError(f"{path}: cannot read ({e.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise FlowError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    duplicate = _duplicate_key(node)
    if duplicate:
        key, first, again = duplicate
        raise FlowError(f"{path}:{again}: {key}: written twice (first on line {first}). "
                        "Fix: keep one of them.")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data),
                    key=lambda err: list(err.absolute_path))
    if errors:
        err = errors[0]
        at = list(err.absolute_path)
        offending = _offending_key(err)
        if offending is None:  # a bad value: its own description says what is allowed
            fix = err.schema.get("description") if isinstance(err.schema, dict) else None
            fix = fix or _description_at(schema, at)
        elif err.validator == "additionalProperties":  # an unknown key: name the known ones
            at.append(offending)
            fix = err.schema.get("description") or "one of " + ", ".join(
                err.schema.get("properties", {}))
        else:  # a missing key: say what it should hold
            at.append(offending)
            fix = _description_at(schema, at)
        key = ".".join(str(p) for p in at) or "(top level)"
        hint = f" Fix: use {fix}." if fix else ""
        line = _line_of(node, at)
        where = f"{path}:{line}" if line else str(path)
        raise FlowError(f"{where}: {key}: {err.message}.{hint}")
    return data


def _description_at(schema: dict[str, Any], path: list[Any]) -> str | None:
    found = schema.get("description")
    for part in path:
        schema = schema.get("properties", {}).get(str(part), {})
        found = schema.get("description", found)
    return found


def load_flows(directory: str | Path) -> Flows:
    """Read every flows/ file the service knows; a missing or bad one stops the start."""
    root = Path(directory)
    loaded = {name: load_file(root / name, schema) for name, schema in SCHEMAS.items()}
    gather = loaded["call.yaml"]["gather"]
    if gather.get("speech_model") and gather["speech_timeout"] == "auto":
        call_yaml = root / "call.yaml"
        line = _line_of(yaml.compose(call_yaml.read_text(encoding="utf-8"),
                                     Loader=yaml.SafeLoader), ["gather", "speech_timeout"])
        raise FlowError(
            f"{call_yaml}:{line}: gather.speech_timeout: 'auto' does not work with "
            f"speech_model {gather['speech_model']!r}. Fix: use whole seconds, such as 2, "
            "or set speech_model: null."
        )
    announcements = loaded["call.yaml"]["announcements"]
    if announcements["more_key"] in loaded["call.yaml"]["menu"]:
        call_yaml = root / "call.yaml"
        line = _line_of(yaml.compose(call_yaml.read_text(encoding="utf-8"),
                                     Loader=yaml.SafeLoader), ["announcements", "more_key"])
        raise FlowError(
            f"{call_yaml}:{line}: announcements.more_key: {announcements['more_key']!r} is "
            "already a menu key. Fix: use a digit the menu does not use, or change the menu."
        )
    return Flows(call=loaded["call.yaml"], incidents=loaded["incidents.yaml"],
                 escalation=loaded["escalation.yaml"], sms=loaded["sms.yaml"])
