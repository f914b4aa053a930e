"""The RQ side: jobs get their Services from worker_services(); importing this does nothing."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rq.worker import HerokuWorker

if TYPE_CHECKING:
    from twilio.base.exceptions import TwilioRestException

    from ivr.services import Services

WORKER_REDIS_TIMEOUT = 5.0  # a job may wait on Redis longer than a webhook may


def worker_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings as create_app() reads them: ivr.config defaults, then the environment."""
    from ivr import config

    settings = {name: getattr(config, name) for name in dir(config) if name.isupper()}
    settings.update(config.settings_from_env(environ))
    config.require_settings(settings)
    return settings


@functools.cache
def worker_services() -> Services:
    """Build this process's Services on first use, and set up JSON logging then.

    Logging is left alone when the root logger already has a handler: the host (pytest, an
    embedding app) set it up. `rq worker` only gives its own `rq.worker` logger one.
    A forked RQ work horse inherits what its parent built; the cache lives as long as the
    process does (`worker_services.cache_clear()` forgets it).
    """
    from ivr import logs
    from ivr.services import build_services

    if not logging.getLogger().handlers:
        logs.configure(os.environ.get("IVR_LOG_LEVEL", "INFO"))
    return build_services(worker_settings(), redis_timeout=WORKER_REDIS_TIMEOUT)


class Worker(HerokuWorker):  # type: ignore[misc]
    """HerokuWorker (clean SIGTERM) that builds Services once, before it forks a work horse
    per job, so no job pays for loading flows/ and prompts/ and opening clients again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        worker_services()


def retryable(e: TwilioRestException) -> bool:
    """Twilio took nothing (rate limited, or its own fault): the same request may be sent
    again. Every other refusal is an answer about this request and is not retried."""
    return e.status == 429 or e.code == 20429 or e.status >= 500
