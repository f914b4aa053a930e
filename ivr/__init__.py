"""incident-ivr: the Twilio front line of a contact centre during an incident."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from ivr.services import Services


def create_app(config: Mapping[str, Any] | None = None, *, services: Services | None = None
               ) -> Flask:
    """Build the web app; production passes nothing and reads the environment."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from ivr import errors, health, metrics, optout_page, sms, voice
    from ivr.api import bp as api_bp
    from ivr.config import require_settings, settings_from_env
    from ivr.services import build_services

    app = Flask(__name__, static_folder=None)
    app.config.from_object("ivr.config")
    app.config.update(config if config is not None else settings_from_env())
    require_settings(app.config)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["ivr"] = services or build_services(app.config)
    errors.register(app)
    metrics.init_app(app)  # metrics: time every request (before/after_request hooks)
    for bp in (voice.bp, sms.bp, optout_page.bp, api_bp, health.bp):
        app.register_blueprint(bp)
    return app


def current_services() -> Services:
    """The Services of the running app."""
    return current_app.extensions["ivr"]  # type: ignore[no-any-return]
