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
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

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

    def scheduler_pid(self) -> int | None:
        """The pid the scheduler holding the default queue's lock registered, if any."""
        name = self.svc.rq_redis.get(RQScheduler.get_locking_key("default"))
        pid = name and self.svc.rq_redis.hget(SCHEDULER_KEY_TEMPLATE % name.decode(), "pid")
        return int(pid) if pid else None

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


def started(stack: Stack) -> tuple[RqWorker, int]:
    """A real worker whose scheduler process (a child of it) holds both queues' locks; the
    worker and that process's pid."""
    worker = RqWorker(stack.env, stack.redis.url, stack.log)
    until("the scheduler to hold the locks", lambda: all(stack.holders())
          and stack.scheduler_pid() in children(worker), alive=worker.proc, log=stack.log)
    pid = stack.scheduler_pid()
    assert pid is not None
    return worker, pid


def log_lines(stack: Stack) -> list[dict[str, Any]]:
    lines = []
    for line in stack.log.read_text(errors="replace").splitlines():
        assert line.startswith("{"), f"not a JSON log line: {line}"
        lines.append(json.loads(line))
    return lines


@pytest.mark.slow
def test_a_watchdog_due_after_a_redis_outage_still_fires_on_time(stack):
    worker, scheduler = started(stack)
    try:
        job = stack.svc.queue.enqueue_in(timedelta(seconds=10), "worker.escalation.watchdog",
                                         new_sid(), 1, job_id="esc-watch-outage-1")
        stack.outage()
        until("the worker to notice", lambda: "cannot reach redis" in stack.log.read_text(),
              alive=worker.proc, log=stack.log)
        stack.back()
        # RQ's own scheduler died here and came back at the worker's ten-minute maintenance
        until("the watchdog to run", lambda: Job.fetch(job.id, connection=stack.svc.rq_redis)
              .get_status() == JobStatus.FINISHED, limit=30, alive=worker.proc, log=stack.log)
        assert stack.scheduler_pid() == scheduler, "the same scheduler lived through it"
        assert scheduler in children(worker)
    finally:
        worker.stop(signal.SIGTERM)
    assert any(line["msg"].startswith("scheduler reached redis again")
               for line in log_lines(stack))


@pytest.mark.slow
def test_a_dead_scheduler_is_started_again_within_seconds(stack):
    worker, first = started(stack)
    try:
        os.kill(first, signal.SIGKILL)
        until("another scheduler process holding the locks",
              lambda: stack.scheduler_pid() not in (None, first) and all(stack.holders())
              and stack.scheduler_pid() in children(worker),
              limit=20, alive=worker.proc, log=stack.log)
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
    worker, scheduler = started(stack)
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
