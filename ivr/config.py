"""Settings: defaults here, overridden by the environment names of PRODUCT.md §4."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The checkout (for scripts/dev); in an installed copy, the site-packages directory."""
PACKAGED = Path(__file__).resolve().parent / "defaults"
"""Where a wheel puts the repository's flows/ and prompts/ (setup.py maps them there)."""


def default_dir(name: str) -> str:
    """flows/ or prompts/ as shipped: inside the installed package, else the checkout's."""
    packaged = PACKAGED / name
    return str(packaged if packaged.is_dir() else ROOT / name)


TWILIO_API_BASE_URL = "https://api.twilio.com"
IVR_TIMEZONE = "Asia/Tokyo"
IVR_SMS_MPS = 10.0
IVR_FLOWS_DIR = default_dir("flows")  # IVR_FLOWS_DIR / IVR_PROMPTS_DIR in the environment
IVR_PROMPTS_DIR = default_dir("prompts")  # override these

TWILIO_FROM_NUMBER = ""
TWILIO_MESSAGING_SERVICE_SID = ""
TWILIO_WORKFLOW_SID = ""
IVR_REDIS_TIMEOUT = 0.25
MAX_CONTENT_LENGTH = 1024 * 1024
MAX_FORM_MEMORY_SIZE = 64 * 1024
IVR_IMPORT_MAX_BYTES = 32 * 1024 * 1024
IVR_METRICS_TOKEN = ""
"""When set, GET /metrics answers only `Authorization: Bearer <this>` (401 otherwise)."""

REQUIRED = ("REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL",
            "IVR_ADMIN_TOKEN")
FROM_ENV = REQUIRED + (
    "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_API_BASE_URL",
    "TWILIO_WORKFLOW_SID", "IVR_TIMEZONE", "IVR_SMS_MPS", "IVR_FLOWS_DIR", "IVR_PROMPTS_DIR",
    "IVR_REDIS_TIMEOUT", "IVR_QUEUE_REDIS_URL", "IVR_METRICS_TOKEN",
)
RENAMED = {"IVR_SECRET_KEY": "SECRET_KEY"}
"""Environment names read into a Flask setting of another name: IVR_SECRET_KEY signs the
console's session cookie (Flask's SECRET_KEY); unset, ivr.console derives one from
IVR_ADMIN_TOKEN."""
NUMERIC = {"IVR_SMS_MPS", "IVR_REDIS_TIMEOUT"}


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the PRODUCT.md §4 variables that are set; numbers are parsed here, once."""
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for name in FROM_ENV:
        value = env.get(name)
        if value is None or value == "":
            continue
        if name in NUMERIC:
            try:
                settings[name] = float(value)
            except ValueError:
                raise RuntimeError(f"{name} must be a number, got {value!r}") from None
        else:
            settings[name] = value
    for name, setting in RENAMED.items():
        if env.get(name):
            settings[setting] = env[name]
    return settings


def require_settings(config: Mapping[str, Any]) -> None:
    """Refuse to start without the secrets and URLs that have no safe default."""
    missing = [name for name in REQUIRED if not config.get(name)]
    if missing:
        raise RuntimeError("missing settings: " + ", ".join(missing))
    base = str(config["PUBLIC_BASE_URL"])
    if not base.startswith(("https://", "http://")):
        raise RuntimeError(f"PUBLIC_BASE_URL must be an absolute http(s) URL, got {base!r}")
    if float(config.get("IVR_SMS_MPS", IVR_SMS_MPS)) <= 0:
        raise RuntimeError("IVR_SMS_MPS must be greater than 0")
