"""GET /api/openapi.json: the OpenAPI 3.1 document, built from the URL map, the route table
(ivr.api.routes) and the very JSON Schemas that validate the bodies (ivr.schemas), so the
document cannot drift from what the API checks. `markdown()` renders it as docs/api.md
(`ivr api-doc` writes it; a test keeps the checked-in copy current)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, Response, current_app, jsonify
from werkzeug.routing import Map

from ivr import access, schemas
from ivr.api import bp
from ivr.api.routes import ROUTES

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "field": {"type": "string", "description": "the first bad field"},
            "errors": {"type": "array", "description": "every bad field", "items": {
                "type": "object", "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
            "details": {"type": "array", "items": {"type": "object"},
                        "description": "per row or index of a customer list or CSV"},
        }}},
}
_OBJECT: dict[str, Any] = {"type": "object"}
_INCIDENT = {"type": "object", "required": ["id", "title", "severity", "status"],
             "properties": {"id": {"type": "string", "examples": ["INC-20261204-1030-7K2Q"]},
                            "title": {"type": "string"}, "severity": {"type": "string"},
                            "status": {"type": "string"},
                            "declared_by": {"type": "string"},
                            "timeline": {"type": "array", "items": _OBJECT}}}
_CALL = {"type": "object", "required": ["call_sid"],
         "properties": {"call_sid": {"type": "string"}, "tags": {},
                        "context": {"type": ["object", "null"]},
                        "escalation": {"type": ["object", "null"]}}}
_PERSON = {"type": "object", "required": ["id", "login", "name", "role", "active"],
           "properties": {"id": {"type": "string"}, "login": {"type": "string"},
                          "name": {"type": "string"}, "role": {"enum": list(access.ROLES)},
                          "phone": {"type": ["string", "null"]}, "active": {"type": "boolean"},
                          "created_at": {"type": "string"}, "created_by": {"type": "string"},
                          "tokens": {"type": "array", "items": _OBJECT}},
           "examples": [{"id": "p-0123456789abcdef", "login": "yamada", "name": "山田太郎",
                         "role": "operator", "phone": None, "active": True,
                         "created_at": "2026-12-04T01:00:00Z", "created_by": "bootstrap",
                         "tokens": []}]}
ANSWERS: dict[str, dict[str, Any]] = {
    "Any": {},
    "Incident": _INCIDENT,
    "IncidentList": {"type": "object", "required": ["incidents"],
                     "properties": {"incidents": {"type": "array", "items": _INCIDENT}}},
    "Call": _CALL,
    "CallList": {"type": "object", "required": ["calls"],
                 "properties": {"calls": {"type": "array", "items": _CALL}}},
    "SupervisorList": {"type": "object", "required": ["supervisors"],
               "properties": {"supervisors": {"type": "array", "items": _OBJECT}}},
    "Person": _PERSON,
    "PersonList": {"type": "object", "required": ["people"],
                   "properties": {"people": {"type": "array", "items": _PERSON}}},
    "NewToken": {"type": "object", "required": ["id", "token", "person_id"],
                 "properties": {"id": {"type": "string"}, "person_id": {"type": "string"},
                                "token": {"type": "string", "description": "shown only here"}}},
}
_STATUS_TEXT = {
    400: ("入力に誤りがあります (a bad field; every bad field is listed)", "invalid_field",
          "title must be a non-empty string"),
    401: ("トークンがないか無効です (no valid bearer token)", "unauthorized",
          "a valid bearer token is required"),
    403: ("この操作の権限がありません (the role may not do this)", "forbidden",
          "the role operator may not do incident.write"),
    404: ("見つかりません (not found)", "not_found", "no incident INC-20261204-1030-9XZP"),
    409: ("現在の状態では実行できません (conflicts with the current state)", "resolved",
          "incident INC-20261204-1030-7K2Q is already resolved"),
    413: ("本文が大きすぎます (body too large)", "request_entity_too_large", "too large"),
    415: ("JSON で送ってください (send application/json)", "unsupported_media_type",
          "send application/json"),
    429: ("試行が多すぎます (too many bad tokens from this address)", "too_many_attempts",
          "try again in 15 minutes"),
}
DESCRIPTION = """\
インシデント対応 IVR の管理 API です。すべての操作に `Authorization: Bearer <token>` が必要です。
トークンは管理者が `POST /api/people/{person_id}/tokens` で発行します (表示は一度だけです)。
役割: admin (利用者・トークン・SV 名簿を含むすべて)、supervisor (障害・顧客・エスカレーションの
結果)、operator (通話の閲覧、エスカレーション、自分が上げたエスカレーションの結果)。
誤りは `{"error": {"code", "message", "field", "errors": [{"field", "message"}]}}` で返り、
本文の誤りはすべての項目を挙げます。XML 1.0 が許さない文字 (制御文字、U+FFFE などの非文字、
対になっていないサロゲート) を含む文字列は、どの項目でも 400 になります。

The incident IVR's admin API. Every operation needs a bearer token; a body with several bad
fields is answered 400 naming all of them; strings holding characters XML 1.0 forbids are
refused in every field."""


def _error_response(status: int) -> dict[str, Any]:
    text, code, message = _STATUS_TEXT.get(status, ("error", "error", "error"))
    example: dict[str, Any] = {"code": code, "message": message}
    if status == 400:
        example |= {"field": "title", "errors": [
            {"field": "title", "message": "title must be a non-empty string"},
            {"field": "severity", "message": "severity must be one of critical, major, minor"}]}
    return {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}, "example": {"error": example}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(endpoint: str, rule_args: list[str]) -> dict[str, Any]:
    route = ROUTES[endpoint]
    roles = [r for r in access.ROLES if access.allowed(r, route.action)]
    op: dict[str, Any] = {
        "operationId": endpoint.removeprefix("api."),
        "summary": route.summary,
        "description": f"action `{route.action}`; roles: {', '.join(roles)}",
        "tags": [endpoint.removeprefix("api.").split("_")[-1]],
    }
    params: list[dict[str, Any]] = [
        {"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
        for a in rule_args]
    params += [{"name": name, "in": "query", "required": False, "description": text,
                "schema": schema} for name, text, schema in route.query]
    if params:
        op["parameters"] = params
    if route.body == "csv":
        op["requestBody"] = {"required": True, "content": {"text/csv": {
            "schema": {"type": "string"},
            "example": "phone,name,tier,services,region,language,sms_opt_in\n"
                       "+819012345678,鈴木一郎,vip,mail,tokyo,ja,true\n"}}}
    elif route.body is not None:
        schema = _ref(route.body) if route.alt is None else {
            "oneOf": [_ref(route.body), _ref(route.alt)]}
        examples = schemas.SCHEMAS[route.body].get("examples", [])
        content: dict[str, Any] = {"schema": schema}
        if examples:
            content["example"] = examples[0]
        op["requestBody"] = {"required": route.body not in ("Escalate",),
                             "content": {"application/json": content}}
    ok: dict[str, Any] = {"description": "成功しました (success)"}
    if route.ok != 204:
        ok["content"] = {"application/json": {"schema": _ref(route.answer)}}
    responses: dict[str, Any] = {str(route.ok): ok}
    statuses = {401, 403, 429, *route.errors}
    if route.query:
        statuses.add(400)
    for status in sorted(statuses):
        responses[str(status)] = _error_response(status)
    responses["default"] = {"description": "その他の誤り (any other error)", "content": {
        "application/json": {"schema": _ref("Error")}}}
    op["responses"] = responses
    return op


def document(url_map: Map) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every /api/ route in `url_map`."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, sorted(rule.arguments))
    assert not set(ANSWERS) & set(schemas.SCHEMAS), "an answer and a body share a name"
    components = {"Error": _ERROR, **schemas.SCHEMAS, **ANSWERS}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "incident-ivr admin API", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "ivr_... tokens from POST /api/people/{person_id}/tokens, or "
                           "IVR_ADMIN_TOKEN (acts as `bootstrap`)"}}},
    }


def api_map() -> Map:
    """The URL map of the API blueprint alone: enough for the document, no Redis needed."""
    app = Flask("ivr-doc")
    app.register_blueprint(bp)
    return app.url_map


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.1 document."""
    return jsonify(document(current_app.url_map))


# --- docs/api.md --------------------------------------------------------------------------------

def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(_type(s) for s in schema["oneOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return " \\| ".join(kind) if isinstance(kind, list) else str(kind)


def _limits(schema: dict[str, Any]) -> str:
    bits = []
    for key, word in (("minLength", "min"), ("maxLength", "max"), ("maxItems", "max items"),
                      ("minimum", "≥"), ("maximum", "≤")):
        if key in schema:
            bits.append(f"{word} {schema[key]}")
    if schema.get("description"):
        bits.append(str(schema["description"]))
    return "; ".join(bits).replace("|", "\\|")


def _fields(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("type") == "array":
        lines += [f"A list (at most {schema.get('maxItems')}) of objects with the fields below.",
                  ""]
        schema = schema["items"]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | notes |", "|---|---|---|---|"]
    for field, sub in schema.get("properties", {}).items():
        lines.append(f"| `{field}` | {_type(sub)} | {'yes' if field in required else ''} | "
                     f"{_limits(sub)} |")
    for example in schema.get("examples", [])[:1]:
        lines += ["", "```json", json.dumps(example, ensure_ascii=False, indent=2), "```"]
    return lines + [""]


def markdown(doc: dict[str, Any]) -> str:
    """docs/api.md: the document as a reference a person reads."""
    out = ["# Admin API reference", "",
           "<!-- Generated from GET /api/openapi.json by `ivr api-doc`; do not edit. -->", "",
           doc["info"]["description"], "", "## Operations", "",
           "| method | path | what | roles |", "|---|---|---|---|"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            roles = op["description"].split("roles: ", 1)[-1]
            out.append(f"| {method.upper()} | `{path}` | {op['summary']} | {roles} |")
    out += [""]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out += [f"## {method.upper()} `{path}`", "", op["summary"] + ".", "",
                    op["description"] + "."]
            for p in op.get("parameters", []):
                if p["in"] == "query":
                    out.append(f"- query `{p['name']}`: {p.get('description', '')}")
            body = op.get("requestBody", {}).get("content", {})
            for mime, content in body.items():
                out += ["", f"Request body ({mime}): {_type(content['schema'])}"]
            codes = ", ".join(c for c in op["responses"] if c != "default")
            out += ["", f"Answers: {codes}.", ""]
    out += ["## Request bodies", ""]
    for name, schema in schemas.SCHEMAS.items():
        out += _fields(name, schema)
    out += ["## Errors", "", "```json",
            json.dumps(_error_response(400)["content"]["application/json"]["example"],
                       ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(out)
