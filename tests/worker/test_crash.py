"""A worker killed with -9 in the middle of a fan-out: every recipient still gets exactly one
message (PRODUCT.md §3), settled from Twilio's own record where the send's outcome is unknown.

The slow test runs a real `rq worker` against the session's redis-server and the fake Twilio:
it is killed while a send is inside Twilio (the fake holds that request, then takes it), RQ
retries the abandoned batch on a fresh worker, and the claim the kill left pending is settled
by the sweep, run in-process with the clock moved past `settle_after_seconds`. The fast test
checks that a message settled that way is recorded and counted as if its sender had lived.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from rq import Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler

from ivr import create_app, keys
from ivr.config import FROM_ENV
from ivr.services import Services, build_services
from tests.conftest import ADMIN_TOKEN, BurstWorker, forget_worker_services
from tests.factories import add_customer, declare
from tests.worker import RqWorker, until

ROOT = Path(__file__).resolve().parents[2]
RECIPIENTS = [f"+8190{5555_0000 + i:08d}" for i in range(60)]
KILL_AFTER = 15
MPS = 50.0


class Admin:
    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                **kwargs)

    def get(self, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


@pytest.fixture
def live(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, content: dict[str, Any]
         ) -> Iterator[tuple[Services, dict[str, str]]]:
    """Services on the real clock, and the environment a worker process is configured from."""
    config = {**config, "IVR_SMS_MPS": MPS}
    env = {name: str(config[name]) for name in FROM_ENV if name in config}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forget_worker_services()
    services = build_services(config, **content)
    services.redis.flushdb()
    services.rq_redis.flushdb()
    yield services, {**os.environ, **env, "IVR_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT)}
    forget_worker_services()
    services.redis.close()
    services.rq_redis.close()


def claims(svc: Services, incident_id: str) -> dict[str, str | None]:
    pipe = svc.redis.pipeline(transaction=False)
    for phone in RECIPIENTS:
        pipe.get(keys.sms_claim(incident_id, 0, phone))
    return dict(zip(RECIPIENTS, pipe.execute(), strict=True))


def release_scheduler_locks(svc: Services) -> None:
    """What the lock's TTL does 61 s after the scheduler holding it has died."""
    svc.rq_redis.delete(*(RQScheduler.get_locking_key(q) for q in ("sms", "default")))


@pytest.mark.slow
def test_a_worker_killed_mid_fan_out_leaves_every_recipient_exactly_one_message(
        live, fake_twilio, queue_redis_server, tmp_path):
    svc, env = live
    for phone in RECIPIENTS:
        add_customer(svc, phone)
    svc.redis.sadd(keys.customers_by_service("mail"), *RECIPIENTS)
    admin = Admin(create_app(svc.config, services=svc).test_client())
    fake_twilio.hold_after = KILL_AFTER  # Twilio takes KILL_AFTER messages, holds the next
    log = tmp_path / "rq-worker.log"
    workers: list[RqWorker] = []
    try:
        # 1. A real worker takes the fan-out; after KILL_AFTER messages the next send is held
        # inside Twilio, and the worker (with its work horse and scheduler) is killed.
        workers.append(RqWorker(env, queue_redis_server.url, log))
        first = workers[-1]
        inc = declare(admin)
        batch_id = f"sms-{inc['id']}-0-b0"
        until("a send held inside Twilio", lambda: fake_twilio.held >= 1, alive=first.proc,
              log=log)
        first.stop(signal.SIGKILL)
        at_kill = len(fake_twilio.messages)
        assert at_kill == KILL_AFTER
        fake_twilio.gate.set()  # Twilio takes the message its sender never heard back about
        until("the held message", lambda: len(fake_twilio.messages) == at_kill + 1)
        assert len(fake_twilio.messages) < len(RECIPIENTS), "killed mid-fan-out"
        pending = [p for p, c in claims(svc, inc["id"]).items() if c and c.startswith("pending:")]
        assert pending == [fake_twilio.messages[-1]["to"]]

        # 2. RQ's maintenance finds the dead worker's batch abandoned (after its timeout;
        # here at once) and its Retry schedules it again; a fresh worker runs it.
        started = StartedJobRegistry(queue=svc.sms_queue)
        assert batch_id in started.get_job_ids(cleanup=False)
        started.cleanup(time.time() + 86400)
        assert Job.fetch(batch_id, connection=svc.rq_redis).get_status() == JobStatus.SCHEDULED
        release_scheduler_locks(svc)
        workers.append(RqWorker(env, queue_redis_server.url, log))
        fresh = workers[-1]
        until("the retried batch to finish",
              lambda: Job.fetch(batch_id, connection=svc.rq_redis).get_status()
              in (JobStatus.FINISHED, JobStatus.FAILED),
              alive=fresh.proc, log=log)
        assert Job.fetch(batch_id, connection=svc.rq_redis).get_status() == JobStatus.FINISHED
        fresh.stop(signal.SIGTERM)
        after_retry = claims(svc, inc["id"])
        # the claim the kill left is too fresh to settle: the retry skipped it, sent the rest
        assert [p for p, c in after_retry.items() if c and c.startswith("pending:")] == pending
        assert fake_twilio.sent_to() == {phone: 1 for phone in RECIPIENTS}
    finally:
        for rq_worker in workers:
            rq_worker.stop(signal.SIGKILL)
    assert {w.name for w in Worker.all(connection=svc.rq_redis)
            if w.pid == fresh.proc.pid} == set(), "the fresh worker stopped cleanly"

    # 3. The sweep, ten minutes on (and past settle_after_seconds), finds the pending claim and
    # settles it from Twilio's list of messages instead of sending again.
    with freeze_time(datetime.now(UTC) + timedelta(minutes=11)):
        forget_worker_services()
        release_scheduler_locks(svc)
        scheduler = RQScheduler([svc.sms_queue, svc.queue], connection=svc.rq_redis)
        scheduler.acquire_locks()
        scheduler.enqueue_scheduled_jobs()
        scheduler.release_locks()
        assert f"sweep-{inc['id']}-0-1" in svc.sms_queue.get_job_ids()
        BurstWorker([svc.queue, svc.sms_queue], connection=svc.rq_redis).work(burst=True)

    sent = fake_twilio.sent_to()
    assert sent == {phone: 1 for phone in RECIPIENTS}
    assert len(fake_twilio.messages) == len(RECIPIENTS)
    by_phone = {m["to"]: m["sid"] for m in fake_twilio.messages}
    assert claims(svc, inc["id"]) == by_phone
    for phone, sid in by_phone.items():
        record = svc.redis.hgetall(keys.sms_message(sid))
        assert (record["incident_id"], record["seq"], record["to"]) == (inc["id"], "0", phone)
    assert svc.redis.hget(keys.sms_message(by_phone[pending[0]]), "settled") == "twilio"
    counters = admin.get(f"/api/incidents/{inc['id']}").get_json()["counters"]
    assert (counters["sms_sent"], counters["sms_failed"]) == (len(RECIPIENTS), 0)
    assert svc.redis.hgetall(keys.metrics_sms()) == {"sent": str(len(RECIPIENTS))}
    assert FailedJobRegistry(queue=svc.sms_queue).count == 0
    print(f"\nkilled after {at_kill} messages with 1 held inside Twilio; the retried batch "
          f"sent {len(RECIPIENTS) - at_kill - 1}; the sweep settled {len(pending)} from "
          f"Twilio's record; {len(fake_twilio.messages_sent())} POSTs for "
          f"{len(RECIPIENTS)} recipients")


def test_a_message_settled_from_twilio_is_recorded_and_counted_like_a_sent_one(
        admin, svc, fake_twilio, run_jobs, clock, twilio_post):
    from ivr import progress
    from ivr.optout import optout_url

    phone = RECIPIENTS[0]
    add_customer(svc, phone)
    inc = declare(admin, scope={"numbers": [phone]}, audience="affected", notify=False)
    doc = admin.get(f"/api/incidents/{inc['id']}").get_json()
    body = progress.sms_text(svc, doc, doc["timeline"][0], "ja", optout_url(svc.config, phone))
    # the sender died after Twilio took (and delivered) the message, before it wrote anything
    sid = "SM" + "b" * 32
    fake_twilio.messages.append({"sid": sid, "to": phone, "body": body, "status": "delivered",
                                 "date_created": None})
    claim = keys.sms_claim(inc["id"], 0, phone)
    svc.redis.set(claim, f"pending:{int(clock.time_to_freeze.timestamp())}")
    clock.tick(120)
    for n in range(2):  # the sweep's batch, and a late retry of the dead one
        svc.sms_queue.enqueue("worker.sms.send_batch", inc["id"], 0, [phone], job_id=f"b{n}")
    run_jobs()
    twilio_post("/sms/status", MessageSid=sid, MessageStatus="delivered", To=phone)

    assert fake_twilio.messages_sent() == []
    assert svc.redis.get(claim) == sid
    record = svc.redis.hgetall(keys.sms_message(sid))
    assert {k: record[k] for k in ("incident_id", "seq", "to", "status", "counted",
                                   "settled")} == {
        "incident_id": inc["id"], "seq": "0", "to": phone, "status": "delivered",
        "counted": "delivered", "settled": "twilio"}
    assert 0 < svc.redis.ttl(keys.sms_message(sid)) <= keys.SMS_TTL
    counters = admin.get(f"/api/incidents/{inc['id']}").get_json()["counters"]
    assert (counters["sms_sent"], counters["sms_delivered"], counters["sms_failed"]) == (1, 1, 0)
    assert svc.redis.hgetall(keys.metrics_sms()) == {"sent": "1", "delivered": "1"}
