"""Measure the global SMS rate limiter with N worker processes sending as fast as it allows.

Run from the repository root:
    python bench/sms_rate_bench.py                   # the two standard scenarios below
    python bench/sms_rate_bench.py --mps 30 --segments 1 2 --workers 1 2 4 --seconds 5

Nothing reaches Twilio. Each process picks a message size from the scenario's segment sizes,
calls SegmentRate.attempt() until the limiter grants it (sleeping the wait it is told), and
records the Redis server time of the grant. For each scenario and worker count the script
prints the rate achieved over the first --seconds (a whole number) after the first grant,
that rate as a share of the limit, the segments an ideal limiter would have granted to the
same messages in the same time (ideal_segments: the ceiling the "never above the limit in any
1 s window" rule leaves when whole messages of several segments must fit), the measured
share of that, and the most segments granted in any 1-second sliding window [t, t + 1 s).
The limiter promises that last number is at most floor(mps).

Without --mps/--segments it runs 10/s with messages of 1-4 segments and 30/s with 1-2.

The script starts its own redis-server on a free loopback port. If REDIS_URL is set
it uses that server instead, with a throwaway key that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import private_redis  # noqa: E402

from ivr import keys  # noqa: E402
from ivr.ratelimit import WINDOW_US, SegmentRate, most_in_window  # noqa: E402


@contextmanager
def redis_url() -> Iterator[str]:
    """REDIS_URL if set (the limiter gets a throwaway key), else a private redis-server."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with private_redis() as url:
        yield url


def send_loop(url: str, key: str, mps: float, sizes: list[int], seconds: float, seed: int,
              barrier: Any, results: Any) -> None:
    """One worker: take grants for `seconds` of server time and report (time_us, segments)."""
    rng = random.Random(seed)
    with redis.Redis.from_url(url) as client:
        rate = SegmentRate(client, key, mps)
        barrier.wait()
        grants: list[tuple[int, int]] = []
        attempts = 0
        end_us: int | None = None
        size = rng.choice(sizes)
        while True:
            attempt = rate.attempt(size)
            attempts += 1
            if end_us is None:
                end_us = attempt.server_us + int(seconds * 1_000_000)
            if attempt.granted:
                grants.append((attempt.server_us, size))
                size = rng.choice(sizes)
            else:
                time.sleep(attempt.wait)
            if attempt.server_us >= end_us:
                break
    results.put((grants, attempts))


def ideal_segments(order: list[int], sizes: list[int], capacity: int, seconds: int) -> int:
    """Segments an ideal limiter (no latency, no sleeping late) grants in `seconds` to the
    same messages in the same order, under the same rule: at most `capacity` segments in any
    window [t, t + 1 s). Messages cannot be split or reordered, so a 4-segment message waits
    while 1-3 segments of the window go unused: the ceiling is below the limit whenever the
    sizes do not pack it (all 4-segment messages at 10/s: two a second, 80 %). The measured
    rate is judged against this ceiling as well as against the limit."""
    more = random.Random(7)
    window: list[tuple[int, int]] = []
    t = granted = 0
    end = seconds * WINDOW_US
    for i in range(10**6):
        size = order[i] if i < len(order) else more.choice(sizes)
        while sum(n for _, n in window) + size > capacity:
            t = max(t, window[0][0] + WINDOW_US)
            window.pop(0)
        if t >= end:
            return granted
        window.append((t, size))
        granted += size
    return granted


def run(url: str, workers: int, mps: float, sizes: list[int], seconds: int
        ) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    key = f"{keys.sms_rate()}:bench:{uuid.uuid4().hex[:12]}"
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=send_loop, args=(url, key, mps, sizes, seconds, seed, barrier,
                                                 results))
             for seed in range(workers)]
    for proc in procs:
        proc.start()
    grants: list[tuple[int, int]] = []
    attempts = 0
    for _ in procs:
        got, tried = results.get(timeout=seconds + 60)
        grants += got
        attempts += tried
    for proc in procs:
        proc.join()
    with redis.Redis.from_url(url) as client:
        client.delete(key)
    grants.sort()
    first = grants[0][0]
    measured = [n for t, n in grants if t < first + seconds * 1_000_000]
    rate = sum(measured) / seconds
    ideal = ideal_segments([n for _, n in grants], sizes, max(1, int(mps)), seconds)
    return {"messages": len(measured), "segments": sum(measured), "rate": rate,
            "ratio": rate / mps, "ideal": ideal, "of_ideal": sum(measured) / ideal,
            "max_window": most_in_window(grants),
            "attempts_per_grant": attempts / len(grants)}


SCENARIOS = [(10.0, [1, 2, 3, 4]), (30.0, [1, 2])]
"""(mps, message sizes) run when neither --mps nor --segments is given."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4],
                        help="worker process counts to run, one run each (default 1 2 4)")
    parser.add_argument("--mps", type=float, default=None,
                        help="the limit, segments per second (default: the standard scenarios)")
    parser.add_argument("--segments", type=int, nargs="+", default=None,
                        help="message sizes, picked at random per message")
    parser.add_argument("--seconds", type=int, default=10,
                        help="measured whole seconds per run (default 10)")
    args = parser.parse_args()
    if args.mps is None and args.segments is None:
        scenarios = SCENARIOS
    else:
        scenarios = [(args.mps or 30.0, args.segments or [1, 2])]

    print(f"{args.seconds} s per run; the limiter promises at most floor(mps) segments in any "
          f"1 s window")
    print(f"{'mps':>5} {'sizes':>7} {'workers':>7} {'messages':>8} {'segments':>8} "
          f"{'rate/s':>8} {'of limit':>8} {'ideal':>6} {'of ideal':>8} {'max 1s':>7} "
          f"{'tries/grant':>11}")
    with redis_url() as url:
        for mps, sizes in scenarios:
            label = f"{min(sizes)}-{max(sizes)}"
            for workers in args.workers:
                r = run(url, workers, mps, sizes, args.seconds)
                print(f"{mps:>5g} {label:>7} {workers:>7} {r['messages']:>8} "
                      f"{r['segments']:>8} {r['rate']:>8.2f} {r['ratio']:>8.1%} "
                      f"{r['ideal']:>6} {r['of_ideal']:>8.1%} "
                      f"{r['max_window']:>7} {r['attempts_per_grant']:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
