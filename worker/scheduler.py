"""RQ's scheduler as this service runs it: it outlives a Redis outage, dies with its worker,
and logs through the worker's JSON logging (masked) rather than printing tracebacks.

RQ's own loop (rq.scheduler.RQScheduler.work) lets the first Redis error end the scheduler
process, and RQ starts a new one only on the worker's maintenance pass, every ten minutes:
a few seconds without Redis stopped retries, watchdogs and sweeps for ten minutes. Here a
Redis error costs one tick, and `worker.Worker` restarts a scheduler process that died
anyway within seconds (`Worker.supervise_scheduler`).

The scheduler is a forked child of the worker. It asks Linux to send it SIGTERM when the
worker dies (prctl PR_SET_PDEATHSIG) and checks its parent on every tick elsewhere, so a
killed worker leaves no orphan holding the scheduler locks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from typing import Any

import redis
from rq.scheduler import RQScheduler

log = logging.getLogger("worker.scheduler")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `signum` to this process when its parent exits (Linux only).
    True when the request was taken; elsewhere the scheduler's own parent check serves."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class Scheduler(RQScheduler):  # type: ignore[misc]
    """An RQScheduler whose loop survives Redis errors and ends when its worker is gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parent_pid = os.getpid()  # the worker: start() forks from it

    def orphaned(self) -> bool:
        """True once the worker that started this scheduler is gone."""
        return os.getppid() != self.parent_pid

    def work(self) -> None:
        """Every `interval`: hold the locks, beat, move due jobs onto their queues.

        A Redis error is logged once per outage and the next tick tries again; the locks and
        the scheduler's own hash are taken again by the first tick that reaches Redis
        (RQ's heartbeat re-acquires a lock that expired meanwhile).
        """
        self._install_signal_handlers()
        die_with_parent()
        born = False
        down_since: float | None = None
        while not self._stop_requested and not self.orphaned():
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                if down_since is not None:
                    log.warning("scheduler reached redis again after %.1fs",
                                time.monotonic() - down_since)
                    down_since = None
            except redis.RedisError as e:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("scheduler cannot reach redis (%s); retrying every %ss",
                                type(e).__name__, self.interval)
            time.sleep(self.interval)
        if self.orphaned():
            log.warning("scheduler stopping: its worker (pid %s) is gone", self.parent_pid)
        try:
            self.stop()
        except redis.RedisError as e:  # the locks expire on their own (interval + 60 s)
            log.warning("scheduler stopped without releasing its locks (%s)", type(e).__name__)

    def start(self) -> Any:
        """Fork the scheduler process (RQ's start), running `run` below instead of RQ's."""
        from rq import scheduler as rq_scheduler

        self._status = self.Status.STARTED
        self._connection = None  # a Redis client cannot cross the fork
        self.parent_pid = os.getpid()
        process = rq_scheduler.ForkProcess(target=run, args=(self,), name="Scheduler")
        process.start()
        self._process = process  # type: ignore[assignment]
        return process


def run(scheduler: Scheduler) -> None:
    """The scheduler process: its traceback, if it ever raises, goes through the logging the
    worker set up (JSON, masked) and the process exits 1, instead of multiprocessing
    printing the raw traceback to stderr."""
    scheduler._install_signal_handlers()  # first: the worker's handlers came with the fork
    log.info("scheduler for %s started with pid %s", ", ".join(sorted(scheduler._queue_names)),
             os.getpid())
    try:
        scheduler.work()
    except Exception:
        log.exception("scheduler (pid %s) crashed", os.getpid())
        sys.exit(1)
    log.info("scheduler (pid %s) stopped", os.getpid())
