"""Who may do what: the roles' rights as one table of actions (PRODUCT.md §2).

Actions are `noun.verb` names shared by the API and the console, so both surfaces ask the
same question (`allowed(role, action)`) and a right is granted in one place. Each surface
keeps its own endpoint -> action table (ivr/api/routes.py, ivr/console/) and a test walks its
URL map so that no route is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "supervisor", "operator")

OPERATOR = frozenset({
    "api.describe",       # GET /api/openapi.json
    "incident.read",      # the live view shows what callers hear
    "call.read",
    "call.escalate",
    "outcome.read_own",   # the outcomes of the escalations they raised
})
SUPERVISOR = OPERATOR | {
    "incident.write",     # declare, edit, post updates, resolve, announcements
    "report.read",
    "customer.read",
    "customer.write",
    "roster.read",
    "outcome.read",
    "outcome.write",
    "recording.write",
}
ADMIN = SUPERVISOR | {
    "roster.write",
    "people.admin",
    "token.admin",
}
RIGHTS: dict[str, frozenset[str]] = {
    "admin": frozenset(ADMIN),
    "supervisor": frozenset(SUPERVISOR),
    "operator": OPERATOR,
}
ACTIONS = frozenset(ADMIN)
"""Every action any role may be granted; a route naming another action is a typo."""


@dataclass(frozen=True)
class Actor:
    """Who is calling: a person (by id and login) or the bootstrap token.

    The bootstrap token (IVR_ADMIN_TOKEN) is Actor(None, "bootstrap", "admin"). `login` is what
    every write records as its "by".
    """

    person_id: str | None
    login: str
    role: str


BOOTSTRAP = Actor(None, "bootstrap", "admin")


def allowed(role: str, action: str) -> bool:
    """True when `role` may do `action`; an unknown role or action is refused."""
    return action in RIGHTS.get(role, frozenset())
