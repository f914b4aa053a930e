"""Service endpoints for load balancers and Prometheus."""

from __future__ import annotations

import hmac
import logging

import redis
from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from ivr import current_services
from ivr.metrics import exposition

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up; says nothing about Redis, so a Redis outage restarts nothing."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready only while Redis answers, so a load balancer can route around a cut-off node."""
    try:
        current_services().redis.ping()
    except redis.RedisError as e:
        log.warning("not ready: redis unreachable (%s)", type(e).__name__)
        return jsonify(status="unavailable", redis="down"), 503
    return jsonify(status="ok", redis="up"), 200


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: request latency by endpoint (all gunicorn workers), calls,
    escalations, SMS, RQ queues and live counts from Redis; answers with Redis down too
    (`ivr_redis_up 0`). See ivr/metrics.py.

    With IVR_METRICS_TOKEN set, only a scrape sending `Authorization: Bearer <it>` is
    answered (401 otherwise): the numbers show how busy the incident line is."""
    expected = current_app.config.get("IVR_METRICS_TOKEN") or ""
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.encode()):
            abort(401, description="GET /metrics needs Authorization: Bearer "
                                   "<IVR_METRICS_TOKEN>")
    return Response(exposition(current_app, current_services()),
                    content_type=CONTENT_TYPE_LATEST)
