"""Domain modules never reach into Flask's request machinery or a surface package.

Surface packages (ivr/voice/, ivr/api/, ivr/console/) turn HTTP into plain values and
call the domain; the domain takes those values plus a
Services, so the worker, the API and the console share it. This test walks the imports of
every module under ivr/ except those packages, the local-run tools (ivr/dev/, which the
services' REST client may use) and the WIRING below, and fails on one that
imports flask's request, g, session or current_app (or the Request type), or any
surface package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ivr

ROOT = Path(ivr.__file__).parent
SURFACES = ("ivr.voice", "ivr.api", "ivr.console")
NOT_DOMAIN = (*SURFACES, "ivr.dev")
WIRING = {
    "ivr": "create_app: registers the blueprints and builds Services",
    "ivr.errors": "the admin API's error handlers, read request.path",
    "ivr.signature": "the @twilio_signed decorator, reads the request it checks",
    "ivr.health": "the /healthz and /readyz blueprint",
    "ivr.metrics": "the /metrics blueprint and the per-request timing hooks",
    "ivr.sms": "the Twilio messaging webhooks' blueprint",
    "ivr.optout_page": "the opt-out page's blueprint",
    "ivr.twiml": "turns a TwiML document into a Flask Response",
    "ivr.cli": "the `ivr` command, an entry point that builds the app",
}
REQUEST_MACHINERY = {"request", "g", "session", "current_app", "Request"}


def module_name(path: Path) -> str:
    parts = ["ivr", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def domain_modules() -> dict[str, Path]:
    found = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: path for name, path in sorted(found.items())
            if name not in WIRING
            and not any(name == s or name.startswith(s + ".") for s in NOT_DOMAIN)}


def violations(source: str) -> list[str]:
    """Each import of Flask's request machinery or of a surface package in `source`."""
    found = []

    def surface(name: str) -> bool:
        return any(name == s or name.startswith(s + ".") for s in SURFACES)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module in ("flask", "flask.globals") and names & REQUEST_MACHINERY:
                found.append(f"from {node.module} import {', '.join(sorted(names))}")
            if surface(node.module) or any(surface(f"{node.module}.{n}") for n in names):
                found.append(f"from {node.module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if surface(a.name)]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "flask" and node.attr in REQUEST_MACHINERY:
            found.append(f"flask.{node.attr}")
    return found


def test_the_checker_sees_each_kind_of_forbidden_import():
    assert violations("from flask import Flask, jsonify") == []
    assert violations("from ivr import call, keys") == []
    assert violations("from flask import request") == ["from flask import request"]
    assert violations("from flask.globals import current_app") != []
    assert violations("import flask\nflask.g.x = 1") == ["flask.g"]
    assert violations("from ivr import voice") == ["from ivr import voice"]
    assert violations("from ivr.api import json_body") != []
    assert violations("def f():\n    import ivr.console.views\n") != []


def test_the_walk_covers_the_domain_and_the_wiring_list_is_current():
    assert {module_name(p) for p in ROOT.rglob("*.py")} >= set(WIRING)
    names = domain_modules()
    for expected in ("ivr.call", "ivr.incident", "ivr.escalation", "ivr.optout",
                     "ivr.progress", "ivr.validate", "ivr.keys", "ivr.services"):
        assert expected in names
    assert not any(n.startswith(("ivr.voice", "ivr.api", "ivr.dev")) for n in names)


def test_no_domain_module_imports_request_machinery_or_a_surface():
    bad = {name: found for name, path in domain_modules().items()
           if (found := violations(path.read_text(encoding="utf-8")))}
    assert bad == {}
