"""The schema of flows/intents.yaml, apart from the engine so ivr.flows can check the file at
start without importing the classifier. ivr.flows.load_file turns its first violation into a
FlowError naming the file, the line, the dotted key and the fix."""

from __future__ import annotations

from typing import Any

from ivr.lang import LANGS

LABELS = ("manager", "money", "technical", "anger")
MAX_HINT_CHARS = 100  # Twilio <Gather hints>: each entry at most 100 characters

PHRASE_PATTERN = r"^(?:[^()|?,]|\([^()|?,]+(?:\|[^()|?,]+)*\)\??)+$"
_PHRASE = {
    "type": "string", "minLength": 1, "maxLength": 300, "pattern": PHRASE_PATTERN,
    "description": "a phrase of 1 to 300 characters without commas, where (a|b) gives "
                   "alternative spellings and (a)? an optional part",
}
_HINT = {
    "type": "string", "minLength": 1, "maxLength": MAX_HINT_CHARS, "pattern": r"^[^,()|?]+$",
    "description": "one plain phrase of 1 to 100 characters, without commas or ( | ? )",
}


def _by_lang(item: dict[str, Any], what: str) -> dict[str, Any]:
    return {
        "type": "object", "required": list(LANGS), "additionalProperties": False,
        "properties": {lang: {"type": "array", "items": item,
                              "description": f"a list of {what}"} for lang in LANGS},
        "description": f"ja: and en:, each a list of {what}",
    }


_LABEL = {
    "type": "object", "required": ["negatable", "phrases"], "additionalProperties": False,
    "properties": {
        "negatable": {"type": "boolean",
                      "description": "true or false: may a decline cancel a match"},
        "phrases": _by_lang(_PHRASE, "phrases"),
        "exclude": _by_lang(_PHRASE, "phrases that mean something else"),
        "hints": _by_lang(_HINT, "plain phrases for Twilio's speech hints"),
        "structure": {
            "type": "object", "required": ["window", "alone", "roles", "requests"],
            "additionalProperties": False,
            "properties": {
                "window": {
                    "type": "object", "required": list(LANGS), "additionalProperties": False,
                    "properties": {lang: {"type": "integer", "minimum": 0, "maximum": 60,
                                          "description": "a whole number from 0 to 60"}
                                   for lang in LANGS},
                    "description": "ja: and en:, each the most characters between a role "
                                   "and a request",
                },
                "alone": {"type": "integer", "minimum": 0, "maximum": 20,
                          "description": "a whole number from 0 to 20"},
                "roles": _by_lang(_PHRASE, "phrases naming a person or role"),
                "requests": _by_lang(_PHRASE, "phrases asking for a transfer or a person"),
            },
            "description": "window, alone, roles and requests",
        },
    },
    "description": "negatable, phrases, and optionally exclude, hints and structure",
}

SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["labels", "negation"], "additionalProperties": False,
    "properties": {
        "labels": {
            "type": "object", "required": list(LABELS), "additionalProperties": False,
            "properties": {label: _LABEL for label in LABELS},
            "description": "one entry per label: " + ", ".join(LABELS),
        },
        "negation": {
            "type": "object", "required": ["after", "before"], "additionalProperties": False,
            "properties": {
                "after": {
                    "type": "object", "required": ["max_particles", "particles", "cues"],
                    "additionalProperties": False,
                    "properties": {
                        "max_particles": {"type": "integer", "minimum": 0, "maximum": 5,
                                          "description": "a whole number from 0 to 5"},
                        "particles": _by_lang(_PHRASE, "particles"),
                        "cues": _by_lang(_PHRASE, "decline phrases"),
                    },
                    "description": "max_particles, particles and cues",
                },
                "before": {
                    "type": "object", "required": ["max_words", "cues", "breakers"],
                    "additionalProperties": False,
                    "properties": {
                        "max_words": {"type": "integer", "minimum": 0, "maximum": 10,
                                      "description": "a whole number from 0 to 10"},
                        "cues": _by_lang(_PHRASE, "decline phrases"),
                        "breakers": _by_lang(_PHRASE, "words that start a new request"),
                    },
                    "description": "max_words, cues and breakers",
                },
            },
            "description": "after: and before:",
        },
    },
}

