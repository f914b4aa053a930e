"""Shared fixtures: a real redis-server, the fake Twilio REST server, a signed-webhook client."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from freezegun import freeze_time
from rq import SimpleWorker
from twilio.request_validator import RequestValidator

from ivr import create_app, keys
from ivr import services as services_module
from ivr.config import IVR_FLOWS_DIR, IVR_PROMPTS_DIR
from ivr.flows import load_flows
from ivr.intent import load_lexicon
from ivr.prompts import load_prompts
from ivr.services import Services, build_services
from tests import twiml
from tests.fakes.twilio_api import FakeTwilio, FakeTwilioServer

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token"
PUBLIC_BASE_URL = "https://ivr.example.test"
START = "2026-11-23T01:00:00Z"  # 10:00 in Tokyo


class RedisServer:
    """A redis-server of the test session's own, on a unix socket in a temp dir.

    With `cluster=True` it is a Redis Cluster node serving only the slot of the `{ivr}` hash
    tag, as one node of a real cluster would: it refuses any command, MULTI or Lua script
    whose keys span slots (CROSSSLOT), any key of another slot, and any key a script builds
    that is not in that slot. The app's data lives there for the whole suite, so every test
    also proves the key layout is cluster-safe; RQ, which is not, gets a plain server.
    """

    def __init__(self, tmp: Path, *, cluster: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit("redis-server is not installed: run scripts/test, which installs it", 2)
        self.sock = tmp / "redis.sock"
        mode = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp / "nodes.conf"),
                "--cluster-require-full-coverage", "no",
                "--cluster-port", str(free_port())]  # else 10000: one session per machine
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(tmp), *(mode if cluster else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"unix://{self.sock}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis_lib.Redis.from_url(self.url) as probe:
                    probe.ping()
                    if cluster:
                        slot = probe.execute_command("CLUSTER", "KEYSLOT", keys.PREFIX)
                        probe.execute_command("CLUSTER", "ADDSLOTS", slot)
                        while probe.execute_command("CLUSTER", "INFO").find(
                                b"cluster_state:ok") < 0:
                            time.sleep(0.02)
                return
            except redis_lib.RedisError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The app's Redis, in cluster mode (see RedisServer)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), cluster=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def queue_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """RQ's Redis (IVR_QUEUE_REDIS_URL): RQ cannot run on a cluster."""
    server = RedisServer(tmp_path_factory.mktemp("redis-queue"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def content() -> dict[str, Any]:
    """flows/, prompts/ and the intent lexicon, loaded once for the session (about half a
    second each time otherwise), as keyword arguments of build_services:
    `build_services(config, **content)`. They are read-only; a test that needs other flows
    builds its own (dataclasses.replace, or a tmp directory and IVR_FLOWS_DIR)."""
    return {"flows": load_flows(IVR_FLOWS_DIR),
            "prompts": load_prompts(IVR_PROMPTS_DIR),
            "lexicon": load_lexicon(Path(IVR_FLOWS_DIR) / "intents.yaml")}


@pytest.fixture(scope="session", autouse=True)
def twiml_schema() -> Any:
    """Twilio's TwiML schema (tests/twiml.py), loaded before the first test: without
    ../shared/twiml-xsd every test errors, none is skipped."""
    return twiml.schema()


@pytest.fixture(scope="session")
def fake_twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilioServer() as fake:
        yield fake


@pytest.fixture
def fake_twilio(fake_twilio_server: FakeTwilio) -> FakeTwilio:
    fake_twilio_server.reset()
    return fake_twilio_server


@pytest.fixture
def clock() -> Iterator[Any]:
    """Frozen time (freezegun); tick with clock.tick(seconds) or clock.move_to(...)."""
    with freeze_time(START) as frozen:
        yield frozen


def make_config(redis_url: str, twilio_url: str, queue_redis_url: str | None = None,
                **extra: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "REDIS_URL": redis_url,
        "IVR_QUEUE_REDIS_URL": queue_redis_url or redis_url,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": "+815012345678",
        "TWILIO_API_BASE_URL": twilio_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "IVR_ADMIN_TOKEN": ADMIN_TOKEN,
        "IVR_TIMEZONE": "Asia/Tokyo",
        "IVR_SMS_MPS": 10.0,
        "IVR_FLOWS_DIR": IVR_FLOWS_DIR,
        "IVR_PROMPTS_DIR": IVR_PROMPTS_DIR,
        # generous: a healthy Redis on a loaded machine must never look hung to a test;
        # tests of a hung Redis set the production 0.25 s themselves
        "IVR_REDIS_TIMEOUT": 5.0,
    }
    config.update(extra)
    return config


@pytest.fixture
def config(redis_server: RedisServer, queue_redis_server: RedisServer,
           fake_twilio: FakeTwilio) -> dict[str, Any]:
    return make_config(redis_server.url, fake_twilio.url, queue_redis_server.url)


@pytest.fixture
def svc(config: dict[str, Any], clock: Any, content: dict[str, Any]) -> Iterator[Services]:
    services = build_services(config, clock=lambda: datetime.now(UTC), **content)
    services.redis.flushdb()
    services.rq_redis.flushdb()
    yield services
    services.redis.close()
    services.rq_redis.close()


@pytest.fixture
def redis(svc: Services) -> redis_lib.Redis:
    return svc.redis


@pytest.fixture
def snapshot(svc: Services) -> Callable[[], dict[tuple[str, Any], tuple[bytes, bool]]]:
    """`snapshot()`: every key of the app's Redis and of the queue's Redis, with its
    serialised value and whether it expires, to prove a request wrote nothing:
    `before = snapshot(); ...; assert snapshot() == before`. A refused token's count against
    its address (`{ivr}:auth_fail:*`, the bad-token limit) is left out: it is written by
    design."""

    def take() -> dict[tuple[str, Any], tuple[bytes, bool]]:
        found = {}
        for name, client in (("app", svc.redis), ("queue", svc.rq_redis)):
            for key in client.scan_iter(count=1000):
                if name == "app" and str(key).startswith(f"{keys.PREFIX}:auth_fail:"):
                    continue
                found[(name, key)] = (client.dump(key), client.pttl(key) >= 0)
        return found

    return take


@pytest.fixture
def app(config: dict[str, Any], svc: Services) -> Any:
    return create_app(config, services=svc)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


@pytest.fixture
def twilio_post(client: Any) -> Any:
    """POST a webhook signed the way Twilio signs it (PUBLIC_BASE_URL + path + query)."""

    def post(path: str, **form: str) -> Any:
        signature = sign(PUBLIC_BASE_URL + path, form)
        response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        if response.mimetype == "text/xml":
            twiml.validate(response.get_data())
        return response

    return post


@pytest.fixture
def admin(client: Any) -> Any:
    """The admin API as the bootstrap admin: admin.get/post/put/patch(path, json=...)."""

    class Admin:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        def __getattr__(self, method: str) -> Any:
            def call(path: str, **kwargs: Any) -> Any:
                headers = {**self.headers, **kwargs.pop("headers", {})}
                return getattr(client, method)(path, headers=headers, **kwargs)
            return call

    return Admin()


def parse_twiml(response: Any) -> ET.Element:
    """The TwiML root of a webhook answer, after checking it is text/xml and valid against
    Twilio's schema (tests/twiml.py)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    twiml.validate(response.get_data())
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response"
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


os.environ.setdefault("TZ", "UTC")


@pytest.fixture
def run_jobs(config: dict[str, Any], svc: Services, monkeypatch: pytest.MonkeyPatch,
             content: dict[str, Any]) -> Any:
    """Run every queued RQ job in a real (in-process) RQ worker, configured like production:
    from the environment, against the same Redis and fake Twilio."""
    for name, value in config.items():
        if name.isupper():
            monkeypatch.setenv(name, str(value))
    forget_worker_services()
    # The worker builds its own Services (worker.worker_services); give it the session's
    # loaded flows/prompts/lexicon as it would load them, not half a second per test.
    monkeypatch.setattr(services_module, "build_services",
                        functools.partial(build_services, **content))

    def run() -> None:
        BurstWorker([svc.queue, svc.sms_queue], connection=svc.rq_redis).work(burst=True)

    yield run
    forget_worker_services()


class BurstWorker(SimpleWorker):  # type: ignore[misc]
    """An in-process RQ worker without the pub/sub command channel, which a burst run never
    reads: with redis-py 8, RQ's teardown (unsubscribe, then stop the listening thread)
    can leave that thread waiting its full 60 s for a subscription, so a test hung."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def forget_worker_services() -> None:
    """Drop the worker's cached Services, closing its Redis connections first (a dropped
    pool would be closed by the garbage collector, which warns)."""
    from worker import worker_services

    if worker_services.cache_info().currsize:
        built = worker_services()
        built.redis.close()
        built.rq_redis.close()
    worker_services.cache_clear()


@pytest.fixture
def release_due_jobs(svc: Services) -> Any:
    """What `rq worker --with-scheduler` does on each tick: move scheduled jobs that are due
    (by the frozen clock) onto their queues."""
    from rq.scheduler import RQScheduler

    def release() -> None:
        scheduler = RQScheduler([svc.sms_queue, svc.queue], connection=svc.rq_redis)
        scheduler.acquire_locks()
        scheduler.enqueue_scheduled_jobs()
        scheduler.release_locks()

    return release
