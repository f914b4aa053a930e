"""incident-ivr: the Twilio front line of a contact centre during an incident."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, current_app
from flask.json.provider import DefaultJSONProvider

from ivr.services import Services

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None, *, services: Services | None = None
               ) -> Flask:
    """Build the web app; production passes nothing and reads the environment."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from ivr import console, errors, health, metrics, optout_page, sms, voice
    from ivr.api import bp as api_bp
    from ivr.config import require_settings, settings_from_env
    from ivr.services import build_services

    app = Flask(__name__, static_folder=None)
    app.json = SafeJSON(app)
    app.config.from_object("ivr.config")
    app.config.update(config if config is not None else settings_from_env())
    require_settings(app.config)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.extensions["ivr"] = svc = services or build_services(app.config)
    upgrade(svc)
    errors.register(app)
    metrics.init_app(app)  # metrics: time every request (before/after_request hooks)
    for bp in (voice.bp, sms.bp, optout_page.bp, api_bp, health.bp):
        app.register_blueprint(bp)
    console.init_app(app)
    return app


class SafeJSON(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply to parse (100,000 '[') is bad JSON
    (a 400 from get_json), not a RecursionError (a 500)."""

    ensure_ascii = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def upgrade(svc: Services) -> None:
    """Bring data written by an earlier version up to date (incident.upgrade_active) and
    remove the keys it no longer reads (keys.RETIRED). A web process still starts when Redis
    does not answer: it answers callers degraded meanwhile, and the next start, or the
    incident's next change, does it."""
    from ivr import incident, keys, undeliverable

    try:
        upgraded = incident.upgrade_active(svc)
        marks = undeliverable.upgrade(svc)
        retired = svc.redis.unlink(*keys.RETIRED)
    except redis.RedisError as e:
        log.warning("upgrade skipped, redis unavailable (%s)", type(e).__name__)
        return
    if upgraded:
        log.info("upgraded %d active incident copies", upgraded)
    if marks:
        log.info("undeliverable numbers now expire count=%d", marks)
    if retired:
        log.info("removed %d keys no version reads any more", retired)


def current_services() -> Services:
    """The Services of the running app."""
    return current_app.extensions["ivr"]  # type: ignore[no-any-return]
