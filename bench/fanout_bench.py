"""Measure how long the SMS fan-out takes to queue 100,000 recipients.

Run from the repository root (bench/run runs it for you):
    .venv/bin/python bench/fanout_bench.py [--customers 100000] [--json out.json]

Seeds `--customers` mobile customers who all use the incident's service, declares the
incident through ivr.incident.declare, and runs the real job, worker.sms.fan_out, in this
process (worker.worker_services() built from the same environment `rq worker` reads): it
freezes the audience, reads it back and queues every send_batch job. The clock stops when
fan_out returns, i.e. when every recipient is in a queued job. Nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import redis_url, seed_customers, settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with redis_url() as url:
        os.environ.update(settings(url, IVR_SMS_MPS=os.environ.get("IVR_SMS_MPS", "10"),
                                   IVR_LOG_LEVEL="WARNING"))
        from rq import Queue

        from ivr import incident, keys
        from worker import sms as sms_jobs
        from worker import worker_services

        svc = worker_services()
        svc.redis.flushdb()
        seeded_in = seed_customers(svc.redis, 0, args.customers)
        body = {"title": "モバイル通信の障害", "severity": "critical",
                "scope": {"services": ["mobile"]}, "audience": "affected",
                "announcement": {"ja": "現在、モバイル通信がご利用しにくい状況です。",
                                 "en": "Mobile data is currently disrupted."},
                "notify": True}
        doc = incident.declare(svc, incident.parse_new(body, svc), "bench")

        start = time.perf_counter()
        queued = sms_jobs.fan_out(doc["id"], 0)
        seconds = time.perf_counter() - start

        sms_queue = Queue("sms", connection=svc.rq_redis)
        jobs = sms_queue.count
        in_jobs = 0
        for job_id in sms_queue.get_job_ids():
            job = sms_queue.fetch_job(job_id)
            if job is not None and job.func_name == "worker.sms.send_batch":
                in_jobs += len(job.args[2])
        audience = svc.redis.scard(keys.sms_audience(doc["id"], 0))
        result: dict[str, Any] = {
            "customers": args.customers, "seeded_in_s": round(seeded_in, 1),
            "recipients": queued, "audience": audience, "jobs": jobs,
            "recipients_in_jobs": in_jobs, "seconds": round(seconds, 3),
            "recipients_per_s": round(queued / seconds), "jobs_per_s": round(jobs / seconds),
            "batch_size": int(svc.flows.sms["batch_size"]),
        }
        print(f"fan-out of {queued:,} recipients: {jobs:,} send_batch jobs queued in "
              f"{seconds:.2f} s ({result['recipients_per_s']:,} recipients/s, "
              f"{result['jobs_per_s']:,} jobs/s); {in_jobs:,} numbers found in the jobs")
        if in_jobs != args.customers:
            print(f"  WARNING: expected {args.customers:,} recipients in the jobs")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
