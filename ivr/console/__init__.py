"""The supervisors' web console under /console/ (PRODUCT.md §2): one blueprint, one module
per page, server-rendered Jinja templates, our own CSS and one small script.

Every request passes the same gate (`guard`): sign-in, then the page's action for the
person's role (ACTIONS, checked with ivr.access), then the CSRF token on any POST. Every
answer carries the security headers (`secure_headers`). Views are thin: they turn a form
into the JSON body the API takes, check it with the same parser, call the same domain
function, and render.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from werkzeug.exceptions import HTTPException
from wtforms import ValidationError

from ivr.console.i18n import LANGS, state_word, translate
from ivr.errors import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

PUBLIC = {"console.signin", "console.static", "console.language"}
"""Endpoints open without a session (the sign-in form still checks its CSRF token)."""
SIGNED_IN = {"console.signout"}
"""Endpoints any signed-in person may use, whatever the role."""
ACTIONS: dict[str, str] = {
    "console.board": "incident.read",
    "console.declare": "incident.write",
    "console.declare_preview": "incident.write",
    "console.incident_page": "incident.read",
    "console.incident_edit": "incident.write",
    "console.incident_preview": "incident.write",
    "console.incident_update": "incident.write",
    "console.incident_resolve": "incident.write",
    "console.live": "call.read",
    "console.live_panel": "call.read",
    "console.call_page": "call.read",
    "console.call_outcome": "outcome.write",
    "console.call_escalate": "call.escalate",
    "console.my_escalations": "outcome.read_own",
    "console.roster": "roster.read",
    "console.roster_save": "roster.write",
    "console.customers": "customer.read",
    "console.customers_import": "customer.write",
    "console.people": "people.admin",
    "console.people_create": "people.admin",
    "console.person_edit": "people.admin",
    "console.token_issue": "token.admin",
    "console.token_revoke": "token.admin",
}
"""The console's endpoint -> action table; ivr.access says which roles may do each."""

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' https:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    """Session cookie and CSRF settings, then the blueprint. The session is signed with
    SECRET_KEY when set (IVR_SECRET_KEY in the environment), else a key derived from
    IVR_ADMIN_TOKEN (the one secret every web process shares already), so gunicorn's workers
    agree without a required new variable."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = hmac.new(str(app.config["IVR_ADMIN_TOKEN"]).encode(),
                                            b"ivr console session", hashlib.sha256).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="ivr_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=str(app.config["PUBLIC_BASE_URL"]).startswith("https://"),
        SESSION_COOKIE_PATH="/console",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        WTF_CSRF_TIME_LIMIT=12 * 3600,
    )
    app.register_blueprint(bp)
    app.after_request(secure_headers)


def lang() -> str:
    chosen = session.get("lang")
    return chosen if chosen in LANGS else "ja"


def t(key: str, **values: Any) -> str:
    return translate(lang(), key, **values)


@bp.app_template_global()
def csrf_token() -> str:
    return generate_csrf()  # type: ignore[no-any-return]


@bp.context_processor
def page_globals() -> dict[str, Any]:
    return {"t": t, "lang": lang(), "actor": g.get("actor"), "may": may,
            "state_word": lambda state: state_word(lang(), str(state))}


def may(action: str) -> bool:
    """Whether the signed-in person's role may do `action` (templates hide what they may not)."""
    from ivr import access

    actor = g.get("actor")
    return actor is not None and bool(access.allowed(actor.role, action))


@bp.before_request
def guard() -> ResponseReturnValue | None:
    """Sign-in, then role, then CSRF: no session -> the sign-in page; a role without the
    page's action -> 403; a POST without the session's CSRF token -> 400."""
    endpoint = request.endpoint or ""
    if endpoint not in PUBLIC:
        actor = signin.current_actor()
        if actor is None:
            return redirect(url_for("console.signin", next=request.full_path.rstrip("?")))
        g.actor = actor
        if endpoint not in SIGNED_IN:
            action = ACTIONS.get(endpoint)
            if action is None or not may(action):
                return error_page(403, "forbidden")
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as e:
            log.warning("console csrf refused path=%s (%s)", request.path, e)
            return error_page(400, "bad_request")
    return None


def secure_headers(response: Response) -> Response:
    """The security headers on everything under /console/, a 404 included."""
    if not request.path.startswith(bp.url_prefix or "/console"):
        return response
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(status: int, key: str) -> Response:
    response = Response(render_template("error.html", status=status, message=t(key)),
                        status=status, mimetype="text/html")
    return response


@bp.errorhandler(ApiError)
def api_error(e: ApiError) -> Response:
    if e.status == 404:
        return error_page(404, "not_found")
    return Response(render_template("error.html", status=e.status, message=e.message),
                    status=e.status, mimetype="text/html")


@bp.errorhandler(CSRFError)
def csrf_error(e: CSRFError) -> Response:
    return error_page(400, "bad_request")


@bp.errorhandler(redis.RedisError)
def storage_down(e: redis.RedisError) -> Response:
    log.warning("console: redis unavailable path=%s (%s)", request.path, type(e).__name__)
    return error_page(503, "unavailable")


@bp.errorhandler(HTTPException)
def http_error(e: HTTPException) -> Response:
    code = e.code or 500
    key = {400: "bad_request", 403: "forbidden", 404: "not_found"}.get(code, "error")
    return error_page(code, key)


@bp.get("/language/<choice>")
def language(choice: str) -> Response:
    """The ja/en switch: remember the choice, go back to the page it was clicked on."""
    if choice in LANGS:
        session["lang"] = choice
    target = request.args.get("next", "")
    if not target.startswith("/console/") or target.startswith("//"):
        target = url_for("console.board")
    return redirect(target)  # type: ignore[return-value]


from ivr.console import (  # noqa: E402,F401  (routes register on bp)
    board,
    calls,
    customers,
    incidents,
    live,
    people,
    roster,
    signin,
)
