"""ivr.logs: one JSON object per line, phone numbers and secrets masked, the call's ids carried."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from rq import Queue

from ivr import logs
from tests.conftest import BurstWorker

SID = "CA0123456789abcdef0123456789abcdef"
MESSAGE_SID = "SM0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Configure logging into a buffer the way production does; put the old set-up back after."""
    names = ["", *logs.ROUTED_TO_ROOT]
    saved = {}
    for name in names:
        logger = logging.getLogger(name or None)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate, logger.filters[:])
    switches = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    record_fields = {name: getattr(logging, name) for name in switches}
    buffer = io.StringIO()
    logs.configure("DEBUG", stream=buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    for name, (handlers, level, propagate, filters) in saved.items():
        logger = logging.getLogger(name or None)
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate
    for name, value in record_fields.items():
        setattr(logging, name, value)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("from +819012345678", "from +81******5678"),
        ("From=%2B819012345678&To=%2B815012345678", "From=%2B81******5678&To=%2B81******5678"),
        ("us +12125554567.", "us +1******4567."),
        ("tel 090-1234-5678", "tel 0**-****-5678"),
        ("tel 09012345678", "tel 0******5678"),
        ("office 03-1234-5678", "office 0*-****-5678"),
        ("Authorization: Bearer abc.def-123456", "Authorization: Bearer ***"),
        (f"TWILIO_AUTH_TOKEN={AUTH_TOKEN}", "TWILIO_AUTH_TOKEN=***"),
        (f"token {AUTH_TOKEN} seen", "token *** seen"),
        ("{'admin_token': 'x1y2z3'}", "{'admin_token': '***'}"),
        ("pin=4321 ok", "pin=*** ok"),
        ("issued ivr_AbCdEfGhIjKlMnOpQrStUvWxYz_0123-456 for sv1", "issued ivr_*** for sv1"),
        ('"GET /u/AbCdEfGhIjKlMnOpQrStUvW HTTP/1.1" 200', '"GET /u/*** HTTP/1.1" 200'),
        ("POST https://ivr.example.test/u/Ab-_9xYz0123456789AbCd/resume",
         "POST https://ivr.example.test/u/***/resume"),
        ("Body=%E9%85%8D%E4%BF%A1%E5%81%9C%E6%AD%A2%3A+https%3A%2F%2Fivr.test%2Fu%2FAbC_-123xyz"
         "456789012&To=x",
         "Body=%E9%85%8D%E4%BF%A1%E5%81%9C%E6%AD%A2%3A+https%3A%2F%2Fivr.test%2Fu%2F***&To=x"),
    ],
)
def test_mask_hides_numbers_and_secrets(text: str, masked: str) -> None:
    assert logs.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        f"call_sid={SID} message_sid={MESSAGE_SID}",
        "job sms-inc1-3-0a1b2c3d4e5f queued at 2026-11-23 01:00:00, took 0.25 s",
        "QueuePosition=3 QueueTime=120 port 5000",
        "+81******5678 is already masked",
        "incident_id=INC-20261123-0001 severity=critical",
        "Worker 6e1660423b1e4f8294aef7c62207ccf2: sms: Job OK (probe-2)",
        "Subscribing to channel rq:pubsub:6e1660423b1e4f8294aef7c62207ccf2",
        "Worker rq:worker:6e1660423b1e4f8294aef7c62207ccf2 started with PID 42",
        "cleaned registry of 6e1660423b1e4f8294aef7c62207ccf2 and 0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "queue sid=QU0123456789abcdef0123456789abcdef workflow WW0123456789abcdef0123456789abcdef",
        "GET /users/42 from /usr/lib/python3 and /u/ alone",
    ],
)
def test_mask_leaves_ids_times_and_counts_alone(text: str) -> None:
    assert logs.mask(text) == text


def test_configured_secrets_are_masked_wherever_they_appear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("IVR_ADMIN_TOKEN", "s3cr3t-admin-value")
    monkeypatch.setenv("IVR_METRICS_TOKEN", "short")  # too short to tell from a word: kept
    masker = logs.MaskFilter()
    record = logging.LogRecord("rq.worker", logging.INFO, __file__, 1,
                               "%s then https://AC00:%s@api.example and %s", None, None)
    record.args = (AUTH_TOKEN, AUTH_TOKEN, "s3cr3t-admin-value short")
    assert masker.filter(record)
    assert record.msg == "*** then https://AC00:***@api.example and *** short"
    assert logs.secrets_from_env({"IVR_ADMIN_TOKEN": "", "TWILIO_AUTH_TOKEN": "x" * 8}) == (
        "x" * 8,)
    assert logs.secrets_from_env({"IVR_SECRET_KEY": "session-key-value"}) == (
        "session-key-value",)  # the console's session key is masked like the tokens


def test_phone_numbers_in_message_and_args_are_masked(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    log = logging.getLogger("ivr.test")
    log.info("incoming from +819012345678 call_sid=%s", SID)
    log.info("customer phone=%s alt=%s", "+819012345678", "090-1234-5678")

    first, second = log_lines()
    assert first["msg"] == f"incoming from +81******5678 call_sid={SID}"
    assert second["msg"] == "customer phone=+81******5678 alt=0**-****-5678"
    assert "9012345678" not in json.dumps(log_lines())


def test_tokens_are_masked(log_lines: Callable[[], list[dict[str, Any]]]) -> None:
    log = logging.getLogger("ivr.test")
    log.warning("rejected header %s", "Bearer s3cr3t-admin-token")
    log.warning("twilio client auth_token=%s", AUTH_TOKEN)

    messages = [line["msg"] for line in log_lines()]
    assert messages == ["rejected header Bearer ***", "twilio client auth_token=***"]


def test_opt_out_tokens_in_message_and_args_are_masked(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    from ivr.optout import make_token, read_token

    config = {"TWILIO_AUTH_TOKEN": "t" * 32, "IVR_ADMIN_TOKEN": "admin"}
    token = make_token(config, "+819012345678")
    assert read_token(config, token) == "+819012345678"  # the token is the number
    log = logging.getLogger("ivr.test")
    log.info("opt-out page /u/%s/resume served", token)
    log.warning("bad link %s", f"https://ivr.example.test/u/{token}")

    messages = [line["msg"] for line in log_lines()]
    assert messages == ["opt-out page /u/***/resume served",
                        "bad link https://ivr.example.test/u/***"]
    assert token not in json.dumps(log_lines())


def test_traceback_is_masked(log_lines: Callable[[], list[dict[str, Any]]]) -> None:
    log = logging.getLogger("ivr.test")
    try:
        raise ValueError("The 'To' number +819012345678 is not a valid phone number")
    except ValueError:
        log.exception("send failed message_sid=%s", MESSAGE_SID)

    (line,) = log_lines()
    assert line["msg"] == f"send failed message_sid={MESSAGE_SID}"
    assert line["message_sid"] == MESSAGE_SID
    assert "The 'To' number +81******5678 is not a valid" in line["exc"]
    assert "9012345678" not in line["exc"]


def test_each_line_is_one_json_object_with_the_fields(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    logging.getLogger("ivr.voice").info("answered", extra={"call_sid": SID})
    logging.getLogger("worker.sms").error("retrying job_id=%s", "sms-inc1-3-0a1b2c3d4e5f")
    logging.getLogger("ivr.health").debug("ping")

    lines = log_lines()
    assert [(line["level"], line["logger"], line["msg"]) for line in lines] == [
        ("INFO", "ivr.voice", "answered"),
        ("ERROR", "worker.sms", "retrying job_id=sms-inc1-3-0a1b2c3d4e5f"),
        ("DEBUG", "ivr.health", "ping"),
    ]
    assert lines[0]["call_sid"] == SID
    assert lines[1]["job_id"] == "sms-inc1-3-0a1b2c3d4e5f"
    assert "call_sid" not in lines[2] and "job_id" not in lines[2]
    for line in lines:
        assert line["ts"].endswith("Z") and line["ts"][10] == "T"


def test_lines_are_the_json_that_json_dumps_writes(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    """The formatter writes the object field by field; it must read back exactly, quotes,
    control characters and Japanese included, with the Japanese left readable."""
    buffer = logging.getLogger().handlers[0].stream
    text = 'お客様の声: "つながらない"\n\t\\ \x00 end'
    logging.getLogger("ivr.voice").warning("%s", text, extra={"call_sid": 'CA"x'})

    (line,) = log_lines()
    assert line["msg"] == text and line["call_sid"] == 'CA"x'
    raw = buffer.getvalue()
    assert "お客様の声" in raw
    assert raw == json.dumps(line, ensure_ascii=False) + "\n"


def test_extra_wins_over_the_message(log_lines: Callable[[], list[dict[str, Any]]]) -> None:
    logging.getLogger("ivr.test").info("call_sid=CAother", extra={"call_sid": SID})
    (line,) = log_lines()
    assert line["call_sid"] == SID


@pytest.mark.parametrize(
    ("logger", "message"),
    [
        # a form value chosen by the sender, logged by a view: not a SID, so not a field
        ("ivr.signature", "rejected unsigned request path=/voice/incoming "
                          "call_sid=call_sid=CAFAKE0123"),
        ("ivr.voice", "call in call_sid=CA0123 message_sid=SMnothex0123456789abcdef0123456789ab"),
        # gunicorn repeats the request line as received: nothing in it is ours
        ("gunicorn.access", f'"POST /voice/incoming?call_sid={SID} HTTP/1.1" 403'),
    ],
)
def test_ids_are_taken_only_when_they_look_like_ours(
    log_lines: Callable[[], list[dict[str, Any]]], logger: str, message: str,
) -> None:
    logging.getLogger(logger).warning(message)

    (line,) = log_lines()
    assert "call_sid" not in line and "message_sid" not in line, line


def test_library_loggers_go_through_the_json_handler(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    logging.getLogger("gunicorn.error").info("Booting worker with pid: 42")
    logging.getLogger("rq.worker").info("sms: send(%r)", "+819012345678")

    assert [(line["logger"], line["msg"]) for line in log_lines()] == [
        ("gunicorn.error", "Booting worker with pid: 42"),
        ("rq.worker", "sms: send('+81******5678')"),
    ]


def log_inside_job() -> str:
    logging.getLogger("worker.test").info("sending")
    return "done"


def test_job_id_comes_from_the_running_rq_job(
    log_lines: Callable[[], list[dict[str, Any]]], queue_redis_server: Any
) -> None:
    connection = redis_lib.Redis.from_url(queue_redis_server.url)
    connection.flushdb()
    queue = Queue("sms", connection=connection)
    job = queue.enqueue(log_inside_job, job_id="sms-inc1-1-0a1b2c3d4e5f")

    BurstWorker([queue], connection=connection).work(burst=True)

    assert job.get_status(refresh=True) == "finished"
    sending = [line for line in log_lines() if line["logger"] == "worker.test"]
    assert [(line["msg"], line.get("job_id")) for line in sending] == [
        ("sending", "sms-inc1-1-0a1b2c3d4e5f")
    ]
    connection.close()


def test_importing_configures_nothing() -> None:
    code = (
        "import logging, ivr, ivr.logs, worker\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
        "assert worker.worker_services.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_timestamp_is_utc_to_the_millisecond(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    from freezegun import freeze_time

    with freeze_time("2026-11-23T22:15:07.250+09:00"):
        logging.getLogger("ivr.test").info("one")
    with freeze_time("2026-11-23T13:15:08.007Z"):
        logging.getLogger("ivr.test").info("two")

    with freeze_time("2026-11-23T23:59:59.9996Z"):
        logging.getLogger("ivr.test").info("three")
    assert [line["ts"] for line in log_lines()] == ["2026-11-23T13:15:07.250Z",
                                                    "2026-11-23T13:15:08.007Z",
                                                    "2026-11-23T23:59:59.999Z"]


@pytest.fixture
def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    """gunicorn.conf.py's settings, run as gunicorn runs it; the logging switches it sets
    are put back after."""
    import runpy
    from pathlib import Path

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    return runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))


def test_web_processes_skip_the_job_lookup(monkeypatch: pytest.MonkeyPatch,
                                           gunicorn_conf: dict[str, Any]) -> None:
    import rq

    conf = gunicorn_conf
    assert conf["logconfig_dict"]["filters"]["context"]["jobs"] is False
    assert logs.dict_config()["filters"]["context"]["jobs"] is True

    monkeypatch.setattr(logs, "get_current_job", lambda: pytest.fail("looked up a job"))
    record = logging.LogRecord("ivr.voice", logging.INFO, __file__, 1, "answered", None, None)
    assert logs.ContextFilter(jobs=False).filter(record)
    assert getattr(record, "job_id", None) is None
    assert rq.get_current_job() is None


def test_gunicorn_builds_no_access_log_fields(gunicorn_conf: dict[str, Any]) -> None:
    """The access log is off; gunicorn must not assemble each request's fields for it."""
    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the access log read {name}")

    logger = object.__new__(gunicorn_conf["logger_class"])
    logger.access(Untouchable(), Untouchable(), {}, Untouchable())


def test_each_web_worker_freezes_what_the_app_built_at_start(
        gunicorn_conf: dict[str, Any]) -> None:
    import gc

    gc.unfreeze()
    try:
        gunicorn_conf["post_worker_init"](object())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
