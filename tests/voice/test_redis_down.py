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
        # the production timeout: a stalled Redis never answers, so it always expires
        config = make_config(redis_url, twilio_url, IVR_REDIS_TIMEOUT=0.25)
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


# Each voice endpoint: a request Twilio could send it, and what that leg must hear with
# Redis refused or hung. A new voice endpoint fails test_every_voice_endpoint_is_listed
# until it is added here with the answer its kind of leg gets.
CALLER, SV, OPERATOR = "caller", "sv", "operator"
SV_SORRY = ("申し訳ございません。ただいまシステムに接続できないため、この呼び出しを終了いたします。"
            "接続が戻りしだい、あらためてお電話いたします。")
TARGET = f"call={'CA' + 'a' * 32}&attempt=1"
RESERVATION = "WR" + "b" * 32


def only(*tags: str) -> Any:
    def check(root: Any) -> None:
        assert verbs(root) == list(tags)
    return check


def _apology_then_queue(root: Any) -> None:
    assert verbs(root) == ["Say", "Enqueue"]
    assert root[0].text == APOLOGY
    assert root[1].text == "support"


def _sv_sorry_then_hang_up(root: Any) -> None:
    assert verbs(root) == ["Say", "Hangup"]
    assert root[0].text == SV_SORRY


def _operator_takes_from_twilio_queue(root: Any) -> None:
    assert verbs(root) == ["Say", "Dial"]
    assert root[0].text == APOLOGY
    assert root[1].find("Queue").text == "support"


def _reserved_caller_without_whisper(root: Any) -> None:
    assert verbs(root) == ["Dial"]
    queue = root[0].find("Queue")
    assert (queue.text, queue.attrib["reservationSid"]) == ("support", RESERVATION)


LEGS: dict[str, tuple[str, str, dict[str, str], Any]] = {
    # endpoint: (kind of leg, path, form, check of the parsed TwiML or the status code)
    "voice.incoming": (CALLER, "/voice/incoming", {"From": "+819012345678"},
                       _apology_then_queue),
    "voice.gather_result": (CALLER, "/voice/gather", {"Digits": "1"}, _apology_then_queue),
    "voice.queue_wait": (CALLER, "/voice/queue-wait", {"QueuePosition": "2"},
                         only("Say", "Play")),
    "voice.queue_key": (CALLER, "/voice/queue-key", {"Digits": "1"},
                        only("Redirect")),
    "voice.connecting": (CALLER, "/voice/connecting?join=1", {},
                         only("Say", "Dial")),
    "voice.status": (CALLER, "/voice/status", {"CallStatus": "completed"}, 503),
    "voice.fallback": (CALLER, "/voice/fallback", {},
                       only("Say", "Enqueue")),
    "voice.transfer": (CALLER, "/voice/transfer?trigger=operator", {}, _apology_then_queue),
    "voice.requeue": (CALLER, "/voice/requeue", {}, _apology_then_queue),
    "voice.sv_whisper": (SV, f"/voice/sv-whisper?{TARGET}", {}, _sv_sorry_then_hang_up),
    "voice.sv_connect": (SV, f"/voice/sv-connect?{TARGET}", {"Digits": "1"},
                         _sv_sorry_then_hang_up),
    "voice.escalation_status": (SV, f"/voice/escalation-status?{TARGET}",
                                {"CallStatus": "no-answer"},
                                only()),
    "voice.agent_line": (OPERATOR, "/voice/agent-line", {"From": "+81312345678"},
                         _operator_takes_from_twilio_queue),
    "voice.agent_whisper": (OPERATOR, f"/voice/agent-whisper?reservation={RESERVATION}&"
                                      f"call=CA{'c' * 32}", {},
                            _reserved_caller_without_whisper),
    "voice.agent_rejoin": (OPERATOR, f"/voice/agent-rejoin?call=CA{'c' * 32}", {},
                           only("Hangup")),
}


def test_every_voice_endpoint_is_listed_and_declares_its_answer(dead_line):
    from ivr.voice import ANSWERS

    endpoints = {rule.endpoint for rule in dead_line.app.url_map.iter_rules()
                 if rule.endpoint.startswith("voice.")}
    assert endpoints == set(LEGS)
    assert set(ANSWERS) == endpoints


def _every_leg_answers(line: Line) -> None:
    for endpoint, (kind, path, form, check) in LEGS.items():
        response = line.post(path, CallSid=new_sid(), **form)
        if isinstance(check, int):
            assert response.status_code == check, endpoint
            continue
        root = parse_twiml(response)
        if kind != CALLER:
            assert list(root.iter("Enqueue")) == [], f"{endpoint} queued a staff leg"
        check(root)


def test_every_leg_without_redis_gets_its_own_answer_and_staff_are_never_queued(dead_line):
    _every_leg_answers(dead_line)


def test_every_leg_with_redis_hung_gets_its_own_answer(own_redis, fake_twilio):
    line = Line(own_redis.url, fake_twilio.url)
    os.kill(own_redis.proc.pid, signal.SIGSTOP)  # a timeout, not a refusal
    try:
        _every_leg_answers(line)
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        line.close()
