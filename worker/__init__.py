"""The RQ side: jobs get their Services from worker_services(); importing this does nothing."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import redis
from rq.worker import HerokuWorker

if TYPE_CHECKING:
    from twilio.base.exceptions import TwilioRestException

    from ivr.services import Services

WORKER_REDIS_TIMEOUT = 5.0  # a job may wait on Redis longer than a webhook may
SCHEDULER_CHECK_SECONDS = 5  # a dead scheduler process is started again within this

log = logging.getLogger("worker")


def worker_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings as create_app() reads them: ivr.config defaults, then the environment."""
    from ivr import config

    settings = {name: getattr(config, name) for name in dir(config) if name.isupper()}
    settings.update(config.settings_from_env(environ))
    config.require_settings(settings)
    return settings


@functools.cache
def worker_services() -> Services:
    """Build this process's Services on first use, and set up JSON logging then.

    Logging is left alone when the root logger already has a handler: the host (pytest, an
    embedding app) set it up. `rq worker` only gives its own `rq.worker` logger one.
    A forked RQ work horse inherits what its parent built; the cache lives as long as the
    process does (`worker_services.cache_clear()` forgets it).
    """
    from ivr import logs
    from ivr.services import build_services

    if not logging.getLogger().handlers:
        logs.configure(os.environ.get("IVR_LOG_LEVEL", "INFO"))
    return build_services(worker_settings(), redis_timeout=WORKER_REDIS_TIMEOUT)


class Worker(HerokuWorker):  # type: ignore[misc]
    """HerokuWorker (clean SIGTERM) that builds Services once, before it forks a work horse
    per job, so no job pays for loading flows/ and prompts/ and opening clients again.

    With `--with-scheduler` it runs our `worker.scheduler.Scheduler` (survives Redis
    outages, dies with this worker, logs as JSON) and supervises it: the main loop wakes at
    least every SCHEDULER_CHECK_SECONDS, and a scheduler process that is gone is logged and
    started again then, not at RQ's ten-minute maintenance pass. A worker whose scheduler
    could not take the locks (another worker's holds them) tries again on the same beat, so
    it takes over within seconds of the holder's locks expiring.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scheduler_supervised = False
        worker_services()

    @property
    def dequeue_timeout(self) -> int:
        """How long one wait for a job may block: short, so the loop beats and checks the
        scheduler every few seconds even when no job comes."""
        return SCHEDULER_CHECK_SECONDS

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         *args: Any, **kwargs: Any) -> None:
        """RQ's start of the scheduler, with our Scheduler class. In burst mode it only moves
        the jobs already due (as RQ does) and is not supervised."""
        from worker.scheduler import Scheduler

        self.scheduler = Scheduler(
            self.queues, connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            serializer=self.serializer)
        self._scheduler_supervised = not burst
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's check, which quits the worker on a Redis error: here it waits a second and
        goes on, and the job loop waits for Redis as RQ's own does."""
        with _riding_out_redis("suspension not checked"):
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance (clean registries, start the scheduler), which quits the worker
        on a Redis error: here it is left for the next pass (it runs again until it
        completes)."""
        with _riding_out_redis("maintenance skipped"):
            super().run_maintenance_tasks()

    def unsubscribe(self) -> None:
        """RQ's unsubscribe, race-free: the listening thread is told to end before the
        UNSUBSCRIBE goes out, so the reply wakes it to leave. In RQ's order (unsubscribe,
        then stop) the thread could read the reply first and wait its full 60 s for a new
        subscription, and a SIGTERM'd worker missed its clean stop."""
        thread = self.pubsub_thread
        if not thread:
            return
        try:
            thread.stop(timeout=0)  # redis-py 8: clear the flag, do not wait
        except TypeError:
            thread.stop()  # older redis-py: stop() only clears the flag
        self.pubsub.unsubscribe()
        thread.join(timeout=1)
        self.pubsub.close()

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        """RQ's heartbeat (every loop while idle, every job-monitoring interval during a
        job), then a look at the scheduler."""
        super().heartbeat(*args, **kwargs)
        self.supervise_scheduler()

    def supervise_scheduler(self) -> None:
        """Start the scheduler again when its process is gone: logged once per death with
        its exit code. Never raises; without Redis the next beat tries again."""
        scheduler = self.scheduler
        if not self._scheduler_supervised or scheduler is None or self.is_horse \
                or self._stop_requested:
            return  # a work horse is not the scheduler's parent; a stopping worker lets it go
        process = scheduler._process
        if process is not None and process.is_alive():
            return
        if process is not None:
            log.error("scheduler process %s exited with code %s; starting another",
                      process.pid, process.exitcode)
            scheduler._process = None
        try:
            scheduler.acquire_locks(auto_start=True)
        except redis.RedisError as e:
            log.warning("scheduler not started, redis unavailable (%s)", type(e).__name__)


@contextlib.contextmanager
def _riding_out_redis(skipped: str) -> Iterator[None]:
    """Redis unreachable or too slow inside the block: log `skipped` and wait a second
    instead of letting RQ's loop end the worker."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as e:
        log.warning("%s, redis unavailable (%s)", skipped, type(e).__name__)
        time.sleep(1)


def retryable(e: TwilioRestException) -> bool:
    """Twilio took nothing (rate limited, or its own fault): the same request may be sent
    again. Every other refusal is an answer about this request and is not retried."""
    return e.status == 429 or e.code == 20429 or e.status >= 500
