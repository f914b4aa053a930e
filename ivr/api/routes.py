"""The API's one table: each endpoint's action (who may call it, ivr.access) and what the
document says of it (summary, request schema, answers). The blueprint's before_request reads
`action` to authorize; ivr.api.openapi reads the rest; a test walks app.url_map so that every
/api/ route is here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    action: str
    summary: str
    body: str | None = None
    """The request schema (ivr.schemas.SCHEMAS) or "csv"; bodies of either shape use `alt`."""
    alt: str | None = None
    ok: int = 200
    answer: str = "Any"
    """The answer's schema in ivr.api.openapi.ANSWERS."""
    errors: tuple[int, ...] = (400,)
    query: tuple[tuple[str, str, dict[str, object]], ...] = field(default=())


_ACTIVE: dict[str, object] = {"enum": ["0", "1"]}
ROUTES: dict[str, Route] = {
    "api.declare": Route("incident.write", "障害を宣言します (declare an incident)",
                         "IncidentNew", ok=201, answer="Incident", errors=(400, 415, 409)),
    "api.list_incidents": Route("incident.read", "障害の一覧 (list incidents)",
                                answer="IncidentList",
                                query=(("status", "active | all",
                                        {"enum": ["active", "all"]}),)),
    "api.show": Route("incident.read", "障害を一件 (one incident)", answer="Incident",
                      errors=(404,)),
    "api.edit": Route("incident.write", "障害を編集します (edit)", "IncidentPatch",
                      answer="Incident", errors=(400, 404, 409, 415)),
    "api.post_update": Route("incident.write", "続報を出します (post an update)",
                             "IncidentUpdate", ok=201, errors=(400, 404, 409, 415)),
    "api.resolve": Route("incident.write", "復旧を宣言します (resolve)", "IncidentResolve",
                         answer="Incident", errors=(400, 404, 409, 415)),
    "api.list_calls": Route("call.read", "通話の一覧 (list calls)", answer="CallList",
                            query=(("active", "1: calls in progress", _ACTIVE),
                                   ("tag", "a tag such as affected", {"type": "string"}),
                                   ("raised_by", "the login of whoever escalated",
                                    {"type": "string"}),
                                   ("limit", "1-500", {"type": "string"}))),
    "api.show_call": Route("call.read", "通話を一件 (one call, with 5W1H)", answer="Call",
                           errors=(404,)),
    "api.escalate": Route("call.escalate", "SV へエスカレーションします (warm transfer)",
                          "Escalate", ok=202, answer="Call", errors=(400, 404, 409, 415)),
    "api.outcome": Route("outcome.write", "エスカレーションの結果 (the SV's outcome)",
                         "Outcome", answer="Call", errors=(400, 404, 409, 415)),
    "api.upsert_customers": Route("customer.write", "顧客を登録・更新します (upsert)",
                                  "Customer", alt="CustomerList", errors=(400, 415)),
    "api.import_customers": Route("customer.write", "顧客 CSV の取り込み (import CSV)", "csv",
                                  errors=(400, 413, 415)),
    "api.show_customer": Route("customer.read", "顧客を一件 (one customer)", errors=(400, 404)),
    "api.list_supervisors": Route("roster.read", "SV 名簿 (the roster)", answer="SupervisorList"),
    "api.put_supervisors": Route("roster.write", "SV 名簿を更新します (replace or upsert)",
                                 "Supervisor", alt="Roster", answer="SupervisorList",
                                 errors=(400, 409, 415)),
    "api.supervisor_candidates": Route("roster.read", "呼び出し順 (who an escalation rings)",
                                       query=(("reason", "a ladder reason",
                                               {"type": "string"}),)),
    "api.list_people": Route("people.admin", "利用者の一覧 (people)", answer="PersonList"),
    "api.create_person": Route("people.admin", "利用者を追加します (add a person)",
                               "PersonNew", ok=201, answer="Person", errors=(400, 409, 415)),
    "api.edit_person": Route("people.admin", "利用者を変更します (edit; active=false revokes "
                             "tokens and sessions)", "PersonPatch", answer="Person",
                             errors=(400, 404, 409, 415)),
    "api.issue_token": Route("token.admin", "API トークンを発行します (shown once)", ok=201,
                             answer="NewToken", errors=(404,)),
    "api.revoke_token": Route("token.admin", "API トークンを失効させます (revoke)", ok=204,
                              answer="", errors=(404,)),
    "api.openapi": Route("api.describe", "この API の OpenAPI 3.1 文書 (this document)",
                         errors=()),
}
