"""GET /metrics: latency per endpoint, and calls, escalations, SMS and queues from Redis.

Scrapes are parsed with prometheus_client's own parser, so a malformed exposition fails here
as it would in Prometheus. Each app owns its latency histogram, so counts start at zero in
every test and are asserted exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from ivr import create_app, keys
from ivr.services import build_services
from tests.conftest import free_port, make_config
from tests.factories import add_customer, declare, new_sid, put_roster, repeat_caller, ring

ROOT = Path(__file__).resolve().parent.parent
CALLER = "+819012345678"
OTHER = "+819087654321"
SV_GENERAL_2 = "+819011110002"
SV_GENERAL_3 = "+819011110003"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape(client: Any) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def latency_count(samples: Samples, endpoint: str) -> float | None:
    return value(samples, "ivr_webhook_latency_seconds_count", endpoint=endpoint)


def call_in(twilio_post: Any, sid: str, phone: str = CALLER) -> Any:
    return ring(twilio_post, sid, phone)


@pytest.fixture
def roster(admin: Any) -> None:
    put_roster(admin, ("伊藤主任", SV_GENERAL_2, "general", 2),
               ("高橋SV", SV_GENERAL_3, "general", 3))


def test_calls_are_counted_once_per_call_under_each_tag_kind(admin, twilio_post, client, svc,
                                                             clock):
    declare(admin)
    add_customer(svc, CALLER, tier="vip")
    vip = new_sid()
    call_in(twilio_post, vip)
    call_in(twilio_post, vip)  # Twilio retrying the webhook: still one call
    call_in(twilio_post, new_sid(), OTHER)  # unknown number, not affected

    samples = scrape(client)
    assert {tag: value(samples, "ivr_calls_total", tag=tag)
            for tag in ("affected", "vip", "repeat", "priority", "untagged")} == {
        "affected": 1, "vip": 1, "repeat": 0, "priority": 0, "untagged": 1}
    assert value(samples, "ivr_calls_received_total") == 2
    assert value(samples, "ivr_active_calls") == 2
    assert value(samples, "ivr_active_incidents") == 1
    assert value(samples, "ivr_redis_up") == 1
    # one field per call, its combination of kinds: one write per call
    assert svc.redis.hgetall(keys.metrics_calls_by_kinds()) == {"affected,vip": "1",
                                                               "untagged": "1"}
    assert not [k for k in samples if "incident" in dict(k[1]).get("tag", "")]


def test_latency_histogram_per_endpoint(twilio_post, client, svc, clock):
    call_in(twilio_post, new_sid())
    call_in(twilio_post, new_sid(), OTHER)
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    twilio_post("/voice/incoming")  # signed but without a CallSid: degraded answer, timed

    samples = scrape(client)
    assert latency_count(samples, "voice.incoming") == 3
    assert latency_count(samples, "health.healthz") == 1
    assert latency_count(samples, "unmatched") == 1
    assert latency_count(samples, "health.metrics") is None  # this scrape ends after rendering
    buckets = {float(dict(labels)["le"]): v for (name, labels), v in samples.items()
               if name == "ivr_webhook_latency_seconds_bucket"
               and dict(labels)["endpoint"] == "voice.incoming"}
    assert sorted(buckets) == [0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                               float("inf")]
    assert buckets[float("inf")] == 3
    assert latency_count(scrape(client), "health.metrics") == 1


def test_unsigned_webhooks_are_timed_too(client, svc):
    assert client.post("/voice/incoming", data={"CallSid": new_sid()}).status_code == 403
    assert latency_count(scrape(client), "voice.incoming") == 1


def test_an_accepted_escalation_counts_once(roster, twilio_post, client, svc, clock, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    for _ in range(2):  # the second key press is refused and counts nothing
        twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="1",
                    CallSid="CA" + "5" * 32)
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="completed")
    twilio_post("/voice/status", CallSid=sid, CallStatus="completed")

    samples = scrape(client)
    escalations = {k: v for k, v in samples.items() if k[0] == "ivr_escalations_total"}
    assert escalations == {
        ("ivr_escalations_total", (("outcome", "accepted"), ("reason", "repeat"))): 1}
    assert value(samples, "ivr_calls_total", tag="repeat") == 1
    assert not [k for k in samples if k[0] == "ivr_escalation_attempts_total"]


def test_a_ladder_nobody_answers_counts_each_attempt_and_one_exhausted_end(
        roster, twilio_post, client, svc, clock, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="2")
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="completed")
    run_jobs()
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=1", CallStatus="no-answer")
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=1", CallStatus="no-answer")
    run_jobs()
    assert svc.redis.hget(keys.call(sid), "esc_state") == "exhausted"
    run_jobs()

    samples = scrape(client)
    assert value(samples, "ivr_escalation_attempts_total", reason="repeat",
                 result="declined") == 1
    assert value(samples, "ivr_escalation_attempts_total", reason="repeat",
                 result="no-answer") == 1
    assert value(samples, "ivr_escalations_total", reason="repeat", outcome="exhausted") == 1
    assert value(samples, "ivr_calls_total", tag="priority") == 1
    assert value(samples, "ivr_escalations_total", reason="repeat", outcome="accepted") is None


def test_a_caller_who_hangs_up_while_the_sv_rings_is_abandoned(roster, twilio_post, client,
                                                               svc, clock, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    twilio_post("/voice/status", CallSid=sid, CallStatus="completed")
    twilio_post("/voice/status", CallSid=sid, CallStatus="completed")
    samples = scrape(client)
    assert value(samples, "ivr_escalations_total", reason="repeat", outcome="abandoned") == 1
    assert value(samples, "ivr_active_calls") == 2  # the two earlier calls never ended


def test_nobody_on_call_is_exhausted_at_once(admin, twilio_post, client, svc, clock):
    assert admin.put("/api/supervisors", json=[]).status_code == 200
    repeat_caller(twilio_post, clock, CALLER)
    samples = scrape(client)
    assert value(samples, "ivr_escalations_total", reason="repeat", outcome="exhausted") == 1
    assert value(samples, "ivr_calls_total", tag="priority") == 1


def test_sms_by_status_counts_every_incident_in_one_hash(admin, twilio_post, client, svc, clock,
                                             run_jobs, fake_twilio):
    add_customer(svc, CALLER)
    add_customer(svc, OTHER, services=["web"])
    svc.redis.sadd(keys.customers_by_service("mail"), CALLER)
    svc.redis.sadd(keys.customers_by_service("web"), OTHER)
    declare(admin)
    declare(admin, scope={"services": ["web"]})
    run_jobs()
    assert len(fake_twilio.messages_sent()) == 2
    sids = sorted(svc.redis.scan_iter(keys.sms_message("*")))
    assert len(sids) == 2
    for key, status in zip(sids, ("delivered", "undelivered"), strict=True):
        sid = key.rsplit(":", 1)[1]
        twilio_post("/sms/status", MessageSid=sid, MessageStatus=status,
                    **({"ErrorCode": "30005"} if status == "undelivered" else {}))

    svc.redis.config_resetstat()
    samples = scrape(client)
    assert {status: value(samples, "ivr_sms_total", status=status)
            for status in ("sent", "delivered", "failed")} == {
        "sent": 2, "delivered": 1, "failed": 1}
    # one hash for all of them: a scrape reads nothing per incident
    assert "cmdstat_hmget" not in svc.redis.info("commandstats")


def test_rq_queues_failed_and_scheduled_jobs(admin, client, svc, clock, run_jobs):
    add_customer(svc, CALLER)
    svc.redis.sadd(keys.customers_by_service("mail"), CALLER)
    declare(admin)
    samples = scrape(client)
    assert value(samples, "ivr_rq_queue_depth", queue="sms") == svc.sms_queue.count >= 1
    assert value(samples, "ivr_rq_queue_depth", queue="default") == 0

    svc.queue.enqueue("worker.calls.no_such_job", job_id="metrics-fails")
    svc.queue.enqueue_in(timedelta(minutes=5), "worker.calls.redirect_call", "CA0", "x",
                         job_id="metrics-later")
    assert value(scrape(client), "ivr_rq_queue_depth", queue="default") == 1
    run_jobs()

    samples = scrape(client)
    assert {q: value(samples, "ivr_rq_queue_depth", queue=q) for q in ("default", "sms")} \
        == {"default": 0, "sms": 0}
    assert value(samples, "ivr_rq_failed_jobs", queue="default") == 1
    assert value(samples, "ivr_rq_failed_jobs", queue="sms") == 0
    assert value(samples, "ivr_rq_scheduled_jobs", queue="default") == 1


def test_waiting_callers(twilio_post, client, svc, clock):
    for phone in (CALLER, OTHER):
        sid = new_sid()
        call_in(twilio_post, sid, phone)
        twilio_post("/voice/gather", CallSid=sid, Digits="1")
    assert value(scrape(client), "ivr_waiting_callers") == 2


def test_metrics_answer_without_redis(tmp_path, fake_twilio, content):
    config = make_config(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    services = build_services(config, **content)
    try:
        client = create_app(config, services=services).test_client()
        assert client.get("/healthz").status_code == 200
        samples = scrape(client)
    finally:
        services.redis.close()
        services.rq_redis.close()
    assert value(samples, "ivr_redis_up") == 0
    assert latency_count(samples, "health.healthz") == 1
    assert not [k for k in samples if k[0].startswith(("ivr_calls", "ivr_rq_", "ivr_sms"))]


# --- gunicorn: several workers, one set of numbers ----------------------------------------


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def latency_files(tmp: Path) -> list[Path]:
    return list(tmp.glob("ivr-prometheus-*/histogram_*.db"))


@pytest.mark.slow
def test_gunicorn_workers_report_one_histogram(config, svc, tmp_path):
    """Two workers each time their own requests; every scrape, whichever worker answers it,
    reports all of them; the temp dir gunicorn.conf.py made is gone after shutdown."""
    gunicorn = Path(sys.prefix) / "bin" / "gunicorn"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROMETHEUS_MULTIPROC_DIR", "IVR_PROMETHEUS_TMPDIR", "PORT")}
    env.update({k: str(v) for k, v in config.items() if k.isupper() and k != "TESTING"})
    env.update(TMPDIR=str(tmp_path), WEB_CONCURRENCY="2", GUNICORN_THREADS="1",
               IVR_LOG_LEVEL="WARNING")
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(gunicorn), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
             "ivr:create_app()"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        sent = 1

        # Keep both workers busy until each has served (and so timed) some requests.
        lock = threading.Lock()

        def hit() -> None:
            nonlocal sent
            for _ in range(25):
                assert get(base + "/healthz")[0] == 200
                with lock:
                    sent += 1

        while len(latency_files(tmp_path)) < 2:
            assert sent < 2000, f"one worker served everything: {latency_files(tmp_path)}"
            threads = [threading.Thread(target=hit) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        counts = set()
        for _ in range(10):  # scrapes land on either worker
            status, text = get(base + "/metrics")
            assert status == 200
            samples = parse(text)
            counts.add(latency_count(samples, "health.healthz"))
            assert value(samples, "ivr_redis_up") == 1
        assert counts == {sent}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0, log_path.read_text()
    assert not list(tmp_path.glob("ivr-prometheus-*"))


def test_calls_by_tag_adds_the_combinations_up_and_counts_priority_apart():
    from ivr.metrics import calls_by_tag

    per_tag, received = calls_by_tag({"affected,vip": "2", "affected,repeat": "1",
                                      "repeat": "1", "untagged": "3", "priority": "4"})
    assert per_tag == {"affected": 3, "vip": 2, "repeat": 2, "untagged": 3, "priority": 4}
    assert received == 7  # a move to the priority band is not a further call


def test_the_scheduler_gauge_is_1_only_while_a_live_scheduler_holds_the_queue(
        client, svc, clock):
    from rq.scheduler import RQScheduler

    def up() -> list[float | None]:
        samples = scrape(client)
        return [value(samples, "ivr_rq_scheduler_up", queue=q) for q in ("default", "sms")]

    assert up() == [0, 0]  # no scheduler
    scheduler = RQScheduler([svc.queue], connection=svc.rq_redis)
    scheduler.acquire_locks()
    scheduler.register_birth()
    assert up() == [1, 0]  # it holds only default
    clock.tick(14)
    assert up() == [1, 0]
    clock.tick(2)  # silent past SCHEDULER_STALE_SECONDS: dead, though its lock has not expired
    assert up() == [0, 0]
    scheduler.heartbeat()
    assert up() == [1, 0]
    scheduler.stop()
    assert up() == [0, 0]
