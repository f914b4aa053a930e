"""Gunicorn settings for `web:` in the Procfile and for scripts/dev; the bind comes from them.

Logging goes through ivr.logs (JSON lines, phone numbers and tokens masked); gunicorn's own
loggers are routed there too. The access log stays off: the app logs what matters, with ids.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

# --- metrics: Prometheus multiprocess mode (ivr/metrics.py) ----------------------------------
# Each worker writes its request-latency samples to files in PROMETHEUS_MULTIPROC_DIR, and
# /metrics adds up every worker's files, whichever worker answers the scrape. prometheus_client
# picks its mode when it is first imported, so the variable is set here, before the app (even
# a --preload'ed one) is loaded. Unset, a temp dir of this master's own is used and removed on
# exit; a dir set by ops is emptied at start (counts of an earlier run must not carry over).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ivr-prometheus-")
    os.environ["IVR_PROMETHEUS_TMPDIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]

from gunicorn.glogging import Logger  # noqa: E402

from ivr import logs  # noqa: E402  (after the variable above, in case ivr imports prometheus)

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 15  # Twilio gives a webhook 15 s; a request still running then is already lost
graceful_timeout = 10
keepalive = 5
accesslog = None
loglevel = os.environ.get("IVR_LOG_LEVEL", "INFO").lower()
logs.lean_records()
logconfig_dict = logs.dict_config(loglevel, jobs=False)  # web processes run no RQ jobs
# Any logconfig_dict switches gunicorn's access log on; this keeps it off.
logconfig_dict["loggers"]["gunicorn.access"] = {
    "level": "CRITICAL",
    "handlers": [],
    "propagate": False,
}


class QuietAccessLogger(Logger):
    """gunicorn's logger without the access log. With a logconfig_dict gunicorn builds every
    request's access-log fields before the CRITICAL level drops the line: ~5 % of a worker's
    CPU (measured with py-spy under the webhook benchmark). Setting a logger class also
    stops gunicorn choosing its statsd logger by itself when `statsd_host` is set; nothing
    here uses statsd (metrics are /metrics), and `--access-logfile` printed nothing before
    either, the access logger being at CRITICAL."""

    def access(self, resp: object, req: object, environ: object, request_time: object) -> None:
        return None


logger_class = QuietAccessLogger
# gunicorn >= 23 opens ~/.gunicorn/gunicorn.ctl, shared by every instance of the same user;
# nothing here uses it (older versions ignore the setting).
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """Keep what the app built at start (flows, prompts, the intent lexicon, the modules of
    Flask and twilio: some 70,000 objects) out of the garbage collector's full collections.
    Scanning them held the GIL for 40-57 ms on the benchmark VM, a pause for every request
    in that worker, and the first such collection comes soon after a worker starts (after
    each deploy or restart); frozen, a full collection took ~1 ms. Measured with gc
    callbacks in the workers under bench/webhook_bench.py."""
    gc.freeze()


# --- metrics: multiprocess dir lifecycle (see the top of this file) --------------------------
def on_starting(server: object) -> None:
    """Start the master with an empty metrics dir."""
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def child_exit(server: object, worker: object) -> None:
    """A worker died or was replaced: its counts stay, its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """Remove the temp metrics dir this master made (never one that ops configured)."""
    owned = os.environ.get("IVR_PROMETHEUS_TMPDIR")
    if owned and owned == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(owned, ignore_errors=True)
