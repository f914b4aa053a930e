"""The RQ scheduler (worker/scheduler.py, worker.Worker): it outlives a Redis outage, a dead
one is started again within seconds, it dies with its worker, and its crash is logged as
masked JSON.

The slow tests run a real `rq worker -w worker.Worker --with-scheduler` against a
redis-server of the test's own, which they stop and start again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler

from ivr.config import FROM_ENV
from ivr.services import Services, build_services
from tests.conftest import RedisServer, make_config
from tests.factories import new_sid
from tests.worker import ROOT, RqWorker, descendants, until

QUEUES = ("default", "sms")


class Stack:
    """A redis-server of this test's own (the app's and the queue's), Services on it, and
    the environment a worker process is configured from."""

    def __init__(self, tmp: Path, twilio_url: str, content: dict[str, Any]) -> None:
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.redis = RedisServer(self.dir)
        config = make_config(self.redis.url, twilio_url, self.redis.url)
        self.svc: Services = build_services(config, redis_timeout=2.0, **content)
        self.env = {**os.environ, **{n: str(config[n]) for n in FROM_ENV if n in config},
                    "IVR_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT)}
        self.log = tmp / "rq-worker.log"

    def outage(self) -> None:
        """Redis goes away (saving its data first, as a restarted production Redis would
        have it from its AOF or RDB)."""
        self.svc.rq_redis.shutdown(save=True)
        self.redis.proc.wait(10)

    def back(self) -> None:
        self.redis = RedisServer(self.dir)  # same socket, loads the saved data

    def holders(self) -> list[bytes | None]:
        return [self.svc.rq_redis.get(RQScheduler.get_locking_key(q)) for q in QUEUES]

    def close(self) -> None:
        self.svc.redis.close()
        self.svc.rq_redis.close()
        if self.redis.proc.poll() is None:
            self.redis.stop()


@pytest.fixture
def stack(tmp_path: Path, fake_twilio: Any, content: dict[str, Any]) -> Iterator[Stack]:
    built = Stack(tmp_path, fake_twilio.url, content)
    yield built
    built.close()


def children(worker: RqWorker) -> list[int]:
    return [pid for pid in descendants(worker.proc.pid) if pid != worker.proc.pid]


def started(stack: Stack) -> RqWorker:
    """A real worker whose scheduler process holds both queues' locks."""
    worker = RqWorker(stack.env, stack.redis.url, stack.log)
    until("the scheduler to hold the locks", lambda: all(stack.holders()),
          alive=worker.proc, log=stack.log)
    until("the scheduler process", lambda: len(children(worker)) == 1, alive=worker.proc,
          log=stack.log)
    return worker


def log_lines(stack: Stack) -> list[dict[str, Any]]:
    lines = []
    for line in stack.log.read_text(errors="replace").splitlines():
        assert line.startswith("{"), f"not a JSON log line: {line}"
        lines.append(json.loads(line))
    return lines


@pytest.mark.slow
def test_a_watchdog_due_after_a_redis_outage_still_fires_on_time(stack):
    worker = started(stack)
    try:
        job = stack.svc.queue.enqueue_in(timedelta(seconds=10), "worker.escalation.watchdog",
                                         new_sid(), 1, job_id="esc-watch-outage-1")
        scheduler_pid = children(worker)
        stack.outage()
        until("the worker to notice", lambda: "cannot reach redis" in stack.log.read_text(),
              alive=worker.proc, log=stack.log)
        stack.back()
        # RQ's own scheduler died here and came back at the worker's ten-minute maintenance
        until("the watchdog to run", lambda: Job.fetch(job.id, connection=stack.svc.rq_redis)
              .get_status() == JobStatus.FINISHED, limit=30, alive=worker.proc, log=stack.log)
        assert children(worker) == scheduler_pid, "the same scheduler process lived through it"
        assert all(stack.holders())
    finally:
        worker.stop(signal.SIGTERM)
    assert any(line["msg"].startswith("scheduler reached redis again")
               for line in log_lines(stack))


@pytest.mark.slow
def test_a_dead_scheduler_is_started_again_within_seconds(stack):
    worker = started(stack)
    try:
        [first] = children(worker)
        os.kill(first, signal.SIGKILL)
        until("another scheduler process", lambda: children(worker) not in ([], [first]),
              limit=20, alive=worker.proc, log=stack.log)
        until("its locks", lambda: all(stack.holders()), alive=worker.proc, log=stack.log)
        job = stack.svc.queue.enqueue_in(timedelta(seconds=1), "worker.escalation.watchdog",
                                         new_sid(), 1)
        until("the watchdog to run", lambda: Job.fetch(job.id, connection=stack.svc.rq_redis)
              .get_status() == JobStatus.FINISHED, alive=worker.proc, log=stack.log)
    finally:
        worker.stop(signal.SIGTERM)
    assert {"level": "ERROR", "logger": "worker",
            "msg": f"scheduler process {first} exited with code -9; starting another"} in [
        {k: line[k] for k in ("level", "logger", "msg")} for line in log_lines(stack)]


@pytest.mark.slow
def test_killing_the_worker_takes_its_scheduler_and_its_locks_with_it(stack):
    worker = started(stack)
    [scheduler] = children(worker)
    os.kill(worker.proc.pid, signal.SIGKILL)  # the worker only, as the OOM killer would
    worker.proc.wait(10)
    try:
        until("the scheduler to exit", lambda: not Path(f"/proc/{scheduler}").exists()
              or "zombie" in Path(f"/proc/{scheduler}/status").read_text().lower(), limit=10)
        until("its locks released", lambda: not any(stack.holders()), limit=10)
    finally:
        worker.stop(signal.SIGKILL)
    assert any(line["msg"].startswith("scheduler stopping: its worker")
               for line in log_lines(stack))


CRASH = """
import logging, sys
from unittest import mock
import redis
from ivr import logs
from worker.scheduler import Scheduler

logs.configure("INFO")
scheduler = Scheduler(["default"], connection=redis.Redis.from_url(sys.argv[1]))
with mock.patch.object(Scheduler, "work",
                       side_effect=RuntimeError("token=s3cr3tvalue from +819012345678")):
    process = scheduler.start()
    process.join(20)
print(process.exitcode)
"""


def test_a_crashed_scheduler_logs_one_masked_json_line_and_exits_1(redis_server):
    done = subprocess.run([sys.executable, "-c", CRASH, redis_server.url], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # nothing raw
    crash = [line for line in lines if line["msg"].startswith("scheduler (pid")]
    assert len(crash) == 1 and crash[0]["level"] == "ERROR", lines
    assert "RuntimeError" in crash[0]["exc"] and "Traceback" in crash[0]["exc"]
    assert "s3cr3tvalue" not in done.stderr and "+819012345678" not in done.stderr
    assert "+81******5678" in crash[0]["exc"]
