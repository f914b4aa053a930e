"""What a caller costs while an incident is scoped by a list of numbers, 100 to 10,000.

Run from the repository root:
    .venv/bin/python bench/scope_bench.py [--calls 800] [--rounds 5] [--numbers 100 1000 10000]
                                          [--json f]

An outage scoped by numbers (the lines on a failed exchange) may list up to 10,000 of them
(incident.parse_new). For each size, a fresh database gets 10,000 customers and one active
incident whose scope lists that many numbers: the same AFFECTED customers' in every size,
the rest numbers outside the base, so the same callers are affected each time and only the
list's length changes. The same stream of callers (bench/loadgen.py's mix) is answered
in-process by call.answer_incoming, the whole caller path but HTTP. The sizes take turns for
--rounds rounds. Printed per call: Redis CPU (INFO cpu), this process's CPU and wall time,
the median of the rounds, and the ratio against the smallest list as the median of each
round's ratio (this VM's rounds swing by a sixth; a round's sizes run back to back). The
target is flat: a number is one SISMEMBER however many there are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import phone_of, redis_cpu, redis_url, seed_customers, settings  # noqa: E402
from loadgen import CallerMix, twilio_form  # noqa: E402

CUSTOMERS = 10_000
AFFECTED = 100


def declare_numbers(svc: Any, count: int) -> str:
    """One active incident scoped by `count` numbers, AFFECTED of them customers' (the others
    outside the base), through the API's own parser."""
    from ivr import incident

    numbers = [phone_of(i) if i < AFFECTED else f"+81903{i:07d}" for i in range(count)]
    body = {"title": "交換機の障害", "severity": "major", "audience": "affected",
            "scope": {"numbers": numbers},
            "announcement": {"ja": "一部のお客様でお電話がつながりにくくなっております。"},
            "notify": False}
    return str(incident.declare(svc, incident.parse_new(body, svc), "bench")["id"])


def measure(svc: Any, r: redis.Redis, froms: list[str], run: int) -> dict[str, float]:
    from ivr import call as calls

    infos = [calls.CallInfo.parse(twilio_form(f"CA{run:08x}{i:024x}", f))
             for i, f in enumerate(froms)]
    for info in infos[:100]:  # warm up: scripts loaded, caches filled
        calls.answer_incoming(svc, info)
    timed = infos[100:]
    cpu0, wall0, redis0 = time.process_time(), time.perf_counter(), redis_cpu(r)
    for info in timed:
        calls.answer_incoming(svc, info)
    n = len(timed)
    return {"redis_cpu_us": round((redis_cpu(r) - redis0) / n * 1e6, 1),
            "app_cpu_us": round((time.process_time() - cpu0) / n * 1e6, 1),
            "wall_us": round((time.perf_counter() - wall0) / n * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=800, help="calls per size and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--numbers", type=int, nargs="*", default=[AFFECTED, 1000, 10_000])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = sorted({max(n, AFFECTED) for n in args.numbers})

    with redis_url() as url:
        os.environ.update(settings(url))
        import bench_app

        svc = bench_app.create_app().extensions["ivr"]
        r = redis.Redis.from_url(url, socket_timeout=60)
        froms = CallerMix(list(range(CUSTOMERS)), seed=7).take(args.calls + 100)
        rounds: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
        for run in range(args.rounds * len(sizes)):
            size = sizes[run % len(sizes)]
            r.flushdb()
            seed_customers(r, 0, CUSTOMERS)
            declare_numbers(svc, size)
            rounds[size].append(measure(svc, r, froms, run))
        base = rounds[sizes[0]]
        results: dict[str, dict[str, Any]] = {}
        for size, got in rounds.items():
            results[str(size)] = {k: statistics.median(m[k] for m in got) for k in got[0]}
            results[str(size)]["ratios"] = {
                k: round(statistics.median(m[k] / b[k] for m, b in zip(got, base, strict=True)
                                           if b[k]), 3) for k in got[0]}
        for size, got in results.items():
            print(f"{int(size):>6,} numbers in scope: Redis {got['redis_cpu_us']:6.1f} µs, "
                  f"app {got['app_cpu_us']:6.1f} µs, wall {got['wall_us']:6.1f} µs a call "
                  f"(x{got['ratios']['redis_cpu_us']} / x{got['ratios']['app_cpu_us']} / "
                  f"x{got['ratios']['wall_us']} of {sizes[0]:,})", flush=True)
        r.flushdb()
    if args.json:
        args.json.write_text(json.dumps({"calls": args.calls, "rounds": args.rounds,
                                         "sizes": results}, indent=2))


if __name__ == "__main__":
    main()
