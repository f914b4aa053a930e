"""worker.worker_services(): settings as create_app reads them, built once, logging set up then."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import worker
from ivr import config as ivr_config
from ivr import logs

REQUIRED_ENV = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "worker-test-token",
    "PUBLIC_BASE_URL": "https://ivr.example.test",
    "IVR_ADMIN_TOKEN": "worker-admin-token",
}


@pytest.fixture
def fresh_worker() -> Iterator[None]:
    """No cached Services before or after; the logging set-up put back afterwards."""
    names = ["", *logs.ROUTED_TO_ROOT]
    saved = {
        name: (
            logging.getLogger(name or None).handlers[:],
            logging.getLogger(name or None).level,
            logging.getLogger(name or None).propagate,
        )
        for name in names
    }
    worker.worker_services.cache_clear()
    yield
    cached = worker.worker_services.cache_info().currsize
    if cached:
        services = worker.worker_services()
        services.redis.close()
        services.rq_redis.close()
    worker.worker_services.cache_clear()
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name or None)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_settings_are_the_defaults_then_the_environment() -> None:
    env = {**REQUIRED_ENV, "REDIS_URL": "redis://127.0.0.1:1/0", "IVR_SMS_MPS": "3"}
    settings = worker.worker_settings(env)

    assert settings["IVR_SMS_MPS"] == 3.0
    assert settings["IVR_TIMEZONE"] == ivr_config.IVR_TIMEZONE
    assert settings["IVR_FLOWS_DIR"] == ivr_config.IVR_FLOWS_DIR
    assert settings["TWILIO_AUTH_TOKEN"] == "worker-test-token"


def test_missing_settings_are_refused_by_name() -> None:
    with pytest.raises(RuntimeError, match="missing settings: REDIS_URL, TWILIO_ACCOUNT_SID"):
        worker.worker_settings(
            {"PUBLIC_BASE_URL": "https://x.test", "TWILIO_AUTH_TOKEN": "t", "IVR_ADMIN_TOKEN": "a"}
        )


def test_services_are_built_once_with_the_worker_timeout(
    fresh_worker: None, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ivr_config.FROM_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**REQUIRED_ENV, "REDIS_URL": redis_server.url}.items():
        monkeypatch.setenv(name, value)

    logging.getLogger().handlers.clear()  # as in `rq worker`, where the root has none

    services = worker.worker_services()

    assert worker.worker_services() is services
    assert services.redis.connection_pool.connection_kwargs["socket_timeout"] == 5.0
    assert services.redis.ping()
    assert services.config["TWILIO_AUTH_TOKEN"] == "worker-test-token"
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, logs.JsonFormatter)


def test_logging_set_up_by_the_host_is_kept(
    fresh_worker: None, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**REQUIRED_ENV, "REDIS_URL": redis_server.url}.items():
        monkeypatch.setenv(name, value)
    host_handler = logging.NullHandler()
    logging.getLogger().handlers[:] = [host_handler]

    worker.worker_services()

    assert logging.getLogger().handlers == [host_handler]
