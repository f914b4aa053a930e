"""GET /api/openapi.json: a valid OpenAPI 3.1 document of every /api/ operation, built from
the schemas that validate the bodies; docs/api.md is generated from it and kept current."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec
from werkzeug.serving import make_server

from ivr import schemas
from ivr.api.openapi import api_map, document, markdown
from ivr.api.routes import ROUTES
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def served(admin):
    response = admin.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_valid_openapi_3_1_and_covers_every_operation(admin, app):
    doc = served(admin)
    validate_spec(doc)
    assert doc["openapi"] == "3.1.0"
    operations = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")}
    assert operations == {e.removeprefix("api.") for e in endpoints}
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]


def test_request_bodies_are_the_validating_schemas_themselves(admin):
    doc = served(admin)
    for name, schema in schemas.SCHEMAS.items():
        assert doc["components"]["schemas"][name] == schema
    declare = doc["paths"]["/api/incidents"]["post"]
    assert declare["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IncidentNew"}
    for ops in doc["paths"].values():
        for op in ops.values():
            for status, answer in op["responses"].items():
                if status.startswith("4"):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}


def test_examples_are_japanese_and_valid_against_their_schema():
    for name, schema in schemas.SCHEMAS.items():
        for example in schema.get("examples", []):
            assert schemas.validate(name, example) == [], name
    text = str([s.get("examples") for s in schemas.SCHEMAS.values()])
    assert re.search(r"[ぁ-んァ-ン一-龥]", text)


def test_escalate_lists_both_vocabularies(admin):
    reason = served(admin)["components"]["schemas"]["Escalate"]["properties"]["reason"]
    assert {"general", "billing", "technical", "manager", "anger", "money", "repeat"} <= set(
        reason["enum"])


def test_a_400_answer_conforms_to_the_error_schema(admin):
    doc = served(admin)
    answer = admin.post("/api/incidents", json={"title": ""}).get_json()
    error_schema = {**doc["components"]["schemas"]["Error"]}
    jsonschema.validate(answer, error_schema)
    assert answer["error"]["errors"]


def test_docs_api_md_is_current():
    """Run `ivr api-doc` after changing an API route or schema."""
    current = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert current == markdown(document(api_map())), "docs/api.md is stale: run `ivr api-doc`"
    for route in ROUTES.values():
        assert route.summary in current


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(app, tmp_path):
    """Schemathesis against the app over HTTP: every operation, valid and invalid bodies
    generated from the document; no 5xx, every status, content type and body as documented."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "run",
             f"http://127.0.0.1:{server.server_port}/api/openapi.json",
             "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
             "--checks", "not_a_server_error,status_code_conformance,"
                         "content_type_conformance,response_schema_conformance",
             "--mode", "all", "--max-examples", "15", "--seed", "1",
             "--phases", "examples,coverage,fuzzing", "--workers", "1",
             "--suppress-health-check", "all", "--request-timeout", "20"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
