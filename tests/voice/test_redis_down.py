"""The caller is never dropped: with Redis down or stalled, webhooks still answer TwiML."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from ivr import create_app
from ivr.services import build_services
from tests.conftest import PUBLIC_BASE_URL, RedisServer, make_config, parse_twiml, sign
from tests.factories import new_sid, verbs

APOLOGY = ("お電話ありがとうございます。大変申し訳ございません。"
           "ただいまご案内の一部をお伝えできない状態です。"
           "順番に担当者におつなぎいたしますので、このままお待ちください。")


class Line:
    """A signed-webhook client for an app bound to a given Redis."""

    def __init__(self, redis_url: str, twilio_url: str) -> None:
        config = make_config(redis_url, twilio_url)
        self.services = build_services(config)
        self.app = create_app(config, services=self.services)
        self.client = self.app.test_client()

    def close(self) -> None:
        self.services.redis.close()
        self.services.rq_redis.close()

    def post(self, path: str, **form: str) -> Any:
        return self.client.post(path, data=form, headers={
            "X-Twilio-Signature": sign(PUBLIC_BASE_URL + path, form)})


@pytest.fixture
def dead_line(tmp_path, fake_twilio) -> Any:
    line = Line(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    yield line
    line.close()


@pytest.fixture
def own_redis(tmp_path) -> Any:
    server = RedisServer(tmp_path)
    yield server
    if server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def assert_degraded_caller_answer(response: Any) -> None:
    root = parse_twiml(response)
    assert verbs(root) == ["Say", "Enqueue"]
    assert root[0].text == APOLOGY
    assert root[1].text == "support"
    assert root[1].attrib["waitUrl"] == f"{PUBLIC_BASE_URL}/voice/queue-wait"


def test_every_caller_webhook_answers_without_redis(dead_line):
    sid = new_sid()
    assert_degraded_caller_answer(dead_line.post("/voice/incoming", CallSid=sid,
                                                 From="+819012345678"))
    assert_degraded_caller_answer(dead_line.post("/voice/gather", CallSid=sid, Digits="1"))

    root = parse_twiml(dead_line.post("/voice/queue-wait", CallSid=sid, QueuePosition="4"))
    assert verbs(root) == ["Say", "Play"]
    assert root[0].text.startswith("ただいま4番目にお待ちいただいております。")

    root = parse_twiml(dead_line.post("/voice/connecting?join=1", CallSid=sid))
    assert verbs(root) == ["Say", "Dial"]
    assert root[1].find("Conference").text == sid

    root = parse_twiml(dead_line.post("/voice/fallback", CallSid=sid))
    assert verbs(root) == ["Say", "Enqueue"]


def test_operator_line_without_redis_takes_callers_in_twilio_order(dead_line):
    root = parse_twiml(dead_line.post("/voice/agent-line", CallSid=new_sid(),
                                      From="+81312345678"))
    assert verbs(root) == ["Say", "Dial"]
    queue = root[1].find("Queue")
    assert queue.text == "support"
    assert queue.attrib["url"] == f"{PUBLIC_BASE_URL}/voice/connecting"


def test_status_callback_without_redis_asks_twilio_to_retry(dead_line):
    response = dead_line.post("/voice/status", CallSid=new_sid(), CallStatus="completed")
    assert response.status_code == 503


def test_health_and_readiness_without_redis(dead_line):
    assert dead_line.client.get("/healthz").status_code == 200
    ready = dead_line.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable", "redis": "down"}


def test_redis_stalled_then_stopped_mid_call_then_back(own_redis, fake_twilio, tmp_path):
    line = Line(own_redis.url, fake_twilio.url)
    first = new_sid()
    normal = parse_twiml(line.post("/voice/incoming", CallSid=first, From="+819012345678"))
    assert verbs(normal) == ["Say", "Gather", "Redirect"]

    os.kill(own_redis.proc.pid, signal.SIGSTOP)  # stalled: answers nothing, socket times out
    assert_degraded_caller_answer(line.post("/voice/gather", CallSid=first, Digits="1"))
    assert line.client.get("/readyz").status_code == 503
    os.kill(own_redis.proc.pid, signal.SIGCONT)

    second = new_sid()
    root = parse_twiml(line.post("/voice/incoming", CallSid=second, From="+819012345679"))
    assert verbs(root) == ["Say", "Gather", "Redirect"]

    own_redis.stop()  # gone
    assert_degraded_caller_answer(line.post("/voice/incoming", CallSid=new_sid(),
                                            From="+819012345670"))
    assert line.client.get("/readyz").status_code == 503

    back = RedisServer(tmp_path)  # same socket path: the running app recovers by itself
    try:
        assert line.client.get("/readyz").status_code == 200
        root = parse_twiml(line.post("/voice/incoming", CallSid=new_sid(), From="+819012345671"))
        assert verbs(root) == ["Say", "Gather", "Redirect"]
    finally:
        line.close()
        back.stop()


def test_the_web_starts_with_redis_down_and_says_the_upgrade_waits(tmp_path, fake_twilio,
                                                                   caplog):
    with caplog.at_level("WARNING", logger="ivr"):
        line = Line(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    line.close()
    assert "upgrade skipped, redis unavailable (ConnectionError)" in caplog.messages
