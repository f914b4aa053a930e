"""What GET /metrics reports: request latency per endpoint, and the service's own numbers.

Two sources, because they live in different places:

- Latency is per process. Each app owns its histogram (no global registry, so the many apps
  a test run builds never clash or share counts). Under gunicorn, gunicorn.conf.py sets
  PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client; every worker then
  writes its samples to files there and the scrape adds up all of them, whichever worker
  answers. Without that variable (tests, `flask run`) the app's own histogram is read.
- Calls, escalations, SMS, queues and the live call counts are shared by every web process
  and worker host, so they are kept in Redis (written by the Lua scripts that already run for
  each event; see the `metrics_*` keys) and read at scrape time by `RedisCollector`. With
  Redis away the scrape still answers, with `ivr_redis_up 0` and the latency histogram.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime

import redis
from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import utcparse

from ivr import keys
from ivr.call import METRIC_TAGS
from ivr.services import Services

log = logging.getLogger(__name__)

EXTENSION = "ivr_metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Around the 25 ms a webhook should take; anything past a second is already trouble."""
UNMATCHED = "unmatched"
"""The endpoint label of requests no route matched (404, 405), so paths never become labels."""
OUTCOMES = ("accepted", "exhausted", "abandoned")
SCHEDULER_STALE_SECONDS = 15
"""RQ's scheduler beats every second; one silent this long is taken for dead."""


def multiprocess_dir() -> str | None:
    """The directory gunicorn's workers share their samples through, when running under it."""
    return os.environ.get(MULTIPROC_ENV) or None


class RequestMetrics:
    """The per-process half: one latency histogram for one app."""

    def __init__(self) -> None:
        self.latency = Histogram(
            "ivr_webhook_latency_seconds",
            "Time from the start to the end of handling a request, by Flask endpoint.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=None)


def init_app(app: Flask) -> None:
    """Time every request of `app` in its own histogram."""
    app.extensions[EXTENSION] = RequestMetrics()
    app.before_request(_start_timer)
    app.after_request(_observe)


def _start_timer() -> None:
    g.ivr_request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("ivr_request_started", None)
    if started is not None:
        metrics: RequestMetrics = current_app.extensions[EXTENSION]
        metrics.latency.labels(request.endpoint or UNMATCHED).observe(
            time.perf_counter() - started)
    return response


def exposition(app: Flask, svc: Services) -> bytes:
    """The Prometheus text of one scrape: latency (all workers' under gunicorn) + Redis."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(app.extensions[EXTENSION].latency)
    registry.register(RedisCollector(svc))
    return generate_latest(registry)


def calls_by_tag(fields: dict[str, str]) -> tuple[dict[str, int], int]:
    """Calls per tag kind and calls in all, from the calls-by-tag hash.

    The caller script counts each call once, under its combination of kinds ("affected,vip",
    or "untagged"): one write per call instead of one per kind. 'priority' is counted on its
    own, later, when an escalation first moves a call up; it is not a further call.
    """
    per_tag: dict[str, int] = {}
    received = 0
    for field, value in fields.items():
        n = int(value)
        if field != "priority":
            received += n
        for kind in field.split(","):
            per_tag[kind] = per_tag.get(kind, 0) + n
    return per_tag, received


class RedisCollector:
    """The numbers every process shares, read from Redis in pipelined round trips (the jobs'
    from the queue's Redis)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ivr_redis_up", "1 when Redis answered this scrape, else 0.")
        try:
            metrics = self._read()
        except redis.RedisError as e:
            log.warning("metrics without redis (%s)", type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> list[Metric]:
        svc = self.svc
        queues = (svc.queue, svc.sms_queue)
        pipe = svc.redis.pipeline(transaction=False)
        pipe.hgetall(keys.metrics_calls_by_kinds())
        pipe.hgetall(keys.metrics_escalations())
        pipe.hgetall(keys.metrics_escalation_attempts())
        pipe.hgetall(keys.metrics_sms())
        pipe.zcard(keys.calls_active())
        pipe.zcard(keys.waiting())
        pipe.hlen(keys.incidents_active())
        jobs = svc.rq_redis.pipeline(transaction=False)  # RQ may have a Redis of its own
        for q in queues:
            jobs.llen(q.key)
            jobs.zcard(FailedJobRegistry(queue=q).key)
            jobs.zcard(ScheduledJobRegistry(queue=q).key)
            jobs.get(RQScheduler.get_locking_key(q.name))  # the scheduler holding the queue
        (by_tag, escalations, attempts, sms, active_calls, waiting,
         active_incidents) = pipe.execute()
        per_queue = jobs.execute()

        calls = CounterMetricFamily(
            "ivr_calls", "Calls received, once per CallSid under each tag kind they carried "
            "(a call counts under every kind it has; 'untagged' when it has none).",
            labels=["tag"])
        per_tag, all_calls = calls_by_tag(by_tag)
        for tag in (*METRIC_TAGS, "untagged", *sorted(set(per_tag) - set(METRIC_TAGS) -
                                                      {"untagged"})):
            calls.add_metric([tag], per_tag.get(tag, 0))
        received = CounterMetricFamily("ivr_calls_received", "Calls received, once per CallSid.")
        received.add_metric([], all_calls)

        ended = CounterMetricFamily(
            "ivr_escalations", "Warm transfers to an SV that ended, by ladder reason and "
            "outcome (accepted, exhausted, abandoned).", labels=["reason", "outcome"])
        for field, value in sorted(escalations.items()):
            reason, _, outcome = field.partition("|")
            ended.add_metric([reason, outcome], int(value))
        given_up = CounterMetricFamily(
            "ivr_escalation_attempts", "SV attempts that did not join the caller, by ladder "
            "reason and result (declined, timeout, no-answer, busy, failed, ...).",
            labels=["reason", "result"])
        for field, value in sorted(attempts.items()):
            reason, _, result = field.partition("|")
            given_up.add_metric([reason, result], int(value))

        sms_total = CounterMetricFamily(
            "ivr_sms", "SMS by status, every incident's together: sent (accepted by Twilio), "
            "delivered, failed (refused or undelivered).", labels=["status"])
        for status in ("sent", "delivered", "failed"):
            sms_total.add_metric([status], int(sms.get(status, 0)))

        depth = GaugeMetricFamily("ivr_rq_queue_depth", "Jobs waiting in an RQ queue.",
                                  labels=["queue"])
        failed = GaugeMetricFamily("ivr_rq_failed_jobs", "Jobs in an RQ queue's failed "
                                   "registry.", labels=["queue"])
        scheduled = GaugeMetricFamily("ivr_rq_scheduled_jobs", "Jobs scheduled for later "
                                      "(retries with an interval, watchdogs, cadence) in an "
                                      "RQ queue.", labels=["queue"])
        for i, q in enumerate(queues):
            depth.add_metric([q.name], per_queue[4 * i])
            failed.add_metric([q.name], per_queue[4 * i + 1])
            scheduled.add_metric([q.name], per_queue[4 * i + 2])
        scheduler_up = GaugeMetricFamily(
            "ivr_rq_scheduler_up", "1 when a live RQ scheduler holds the queue's lock (its "
            f"last beat under {SCHEDULER_STALE_SECONDS}s ago), else 0: retries, watchdogs, "
            "sweeps and the update clock run only while it is 1.", labels=["queue"])
        beats = self._scheduler_beats([per_queue[4 * i + 3] for i in range(len(queues))])
        for i, q in enumerate(queues):
            beat = beats.get(per_queue[4 * i + 3])
            live = beat is not None and (svc.now() - beat).total_seconds() < \
                SCHEDULER_STALE_SECONDS
            scheduler_up.add_metric([q.name], 1 if live else 0)

        gauges = []
        for name, text, value in (
            ("ivr_active_calls", "Calls not yet completed.", active_calls),
            ("ivr_waiting_callers", "Callers waiting for an operator.", waiting),
            ("ivr_active_incidents", "Incidents declared and not resolved.", active_incidents),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            gauges.append(gauge)
        return [calls, received, ended, given_up, sms_total, depth, failed, scheduled,
                scheduler_up, *gauges]

    def _scheduler_beats(self, holders: list[bytes | None]) -> dict[bytes, datetime]:
        """The last heartbeat of each scheduler named in `holders` that still has its hash."""
        names = sorted({name for name in holders if name})
        if not names:
            return {}
        pipe = self.svc.rq_redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(SCHEDULER_KEY_TEMPLATE % name.decode(), "last_heartbeat")
        return {name: utcparse(beat.decode())
                for name, beat in zip(names, pipe.execute(), strict=True) if beat}
