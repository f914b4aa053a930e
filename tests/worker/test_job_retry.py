"""A worker that dies while it runs an SMS job (kill -9, a lost machine): RQ finds the job
abandoned and runs it again, because every SMS job is queued with a Retry and is safe to
run twice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from ivr.services import Services
from tests.conftest import BurstWorker
from tests.factories import add_customer, declare, new_sid

JA = "+819012340001"
EN = "+819012340002"


def worker_dies_running(svc: Services, job_id: str) -> None:
    """A worker takes the job off its queue and dies before the job ends; RQ's maintenance
    later finds it in the started registry past its heartbeat."""
    job = Job.fetch(job_id, connection=svc.rq_redis)
    svc.sms_queue.remove(job)
    worker = BurstWorker([svc.sms_queue], connection=svc.rq_redis)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    far = svc.now().timestamp() + 86400
    StartedJobRegistry(queue=svc.sms_queue).cleanup(timestamp=far)


def test_a_fan_out_whose_worker_died_runs_again_and_everyone_gets_the_first_report(
        admin, svc, fake_twilio, run_jobs, clock, release_due_jobs):
    for phone in (JA, EN):
        add_customer(svc, phone)
    inc = declare(admin, scope={"numbers": [JA, EN]}, audience="affected")
    worker_dies_running(svc, f"fanout-{inc['id']}-0")
    run_jobs()
    assert fake_twilio.sent_to() == {}
    clock.tick(5)
    release_due_jobs()
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1, EN: 1}


def _resend_job(admin: Any, svc: Services, fake_twilio: Any, run_jobs: Any, twilio_post: Any
                ) -> str:
    add_customer(svc, JA)
    declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    sid = fake_twilio.messages[0]["sid"]
    twilio_post("/sms/status", MessageSid=sid, MessageStatus="undelivered", ErrorCode="30003",
                To=JA, AccountSid="AC" + "0" * 32)
    return f"resend-{sid}"


def _due_job(admin: Any, svc: Services, fake_twilio: Any, run_jobs: Any, twilio_post: Any
             ) -> str:
    inc = declare(admin)
    run_jobs()
    due = datetime.fromisoformat(inc["next_update_at"])
    return f"due-{inc['id']}-{int(due.timestamp())}"


def _sweep_job(admin: Any, svc: Services, fake_twilio: Any, run_jobs: Any, twilio_post: Any
               ) -> str:
    add_customer(svc, JA)
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    return f"sweep-{inc['id']}-0-1"


def _subscription_job(admin: Any, svc: Services, fake_twilio: Any, run_jobs: Any,
                      twilio_post: Any) -> str:
    inc = declare(admin, audience="all", scope={"regions": ["kansai"]})
    run_jobs()
    sid = new_sid()
    twilio_post("/voice/incoming", CallSid=sid, From=JA, To="+815012345678")
    twilio_post("/voice/gather", CallSid=sid, Digits="1")
    twilio_post("/voice/queue-key", CallSid=sid, Digits="1")
    return f"subscribed-{inc['id']}-{sid}"


@pytest.mark.parametrize("make_job", [_due_job, _sweep_job, _resend_job, _subscription_job],
                         ids=["progress_due", "sweep", "resend_message",
                              "confirm_subscription"])
def test_every_sms_job_whose_worker_died_is_run_again(admin, svc, fake_twilio, run_jobs, clock,
                                                     release_due_jobs, twilio_post, make_job):
    job_id = make_job(admin, svc, fake_twilio, run_jobs, twilio_post)
    job = Job.fetch(job_id, connection=svc.rq_redis)
    if job.get_status() == JobStatus.SCHEDULED:
        clock.move_to(ScheduledJobRegistry(queue=svc.sms_queue).get_scheduled_time(job))
        release_due_jobs()
    worker_dies_running(svc, job_id)
    assert job_id not in FailedJobRegistry(queue=svc.sms_queue).get_job_ids()
    assert job_id in ScheduledJobRegistry(queue=svc.sms_queue).get_job_ids()
    assert Job.fetch(job_id, connection=svc.rq_redis).retries_left == 2
    clock.tick(5)
    release_due_jobs()
    run_jobs()
    assert Job.fetch(job_id, connection=svc.rq_redis).get_status() == JobStatus.FINISHED
