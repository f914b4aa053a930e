"""Measure /voice/incoming against two baselines served by the same gunicorn, and how its
latency moves from 1,000 to 1,000,000 customers.

Run from the repository root (bench/run runs it for you):
    .venv/bin/python bench/webhook_bench.py [--rounds 5] [--duration 2] [--json out.json]

One gunicorn runs `gunicorn.conf.py` as production does (gthread, WEB_CONCURRENCY workers x
GUNICORN_THREADS threads, JSON logs at INFO) on 127.0.0.1:<free port>, serving
bench/bench_app.py: the real app plus /bench/static and /bench/minimal. The load comes from
this process (bench/loadgen.py): 16 keep-alive connections, every request a distinct signed
call (its own CallSid; see loadgen.CallerMix for who calls).

Every customer base (1,000, 10,000, 100,000, 1,000,000 customers) gets its own Redis
database and its own gunicorn, each with one active incident (audience all, 40 % of the
customers affected) and three supervisors on call.

Part 1, the comparison, at 10,000 customers: the three targets take turns for `rounds`
rounds of `warmup` + `duration` seconds each (default 5 x (0.5 + 2) s), so a change in
the machine's background load falls on all three alike.

Part 2, the customer-count sweep: the same mix of calls against every base, in fixed passes
of requests, the bases taking turns pass by pass (the repeat counters of the callers are
cleared before each pass, so every base sees exactly the same kind of calls).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    app_config,
    children,
    db_of,
    declare_incident,
    free_port,
    proc_cpu,
    redis_cpu,
    redis_url,
    seed_customers,
    seed_roster,
    settings,
    stop_process,
    wait_until_up,
    with_db,
)
from loadgen import CallerMix, LoadResult, run_load, signed_requests, twilio_form  # noqa: E402

from ivr import call as calls  # noqa: E402
from ivr import keys  # noqa: E402
from ivr.incident import COUNTERS  # noqa: E402
from ivr.services import build_services  # noqa: E402

TARGETS = {"static": "/bench/static", "minimal": "/bench/minimal",
           "incoming": "/voice/incoming"}
SIZES = (1_000, 10_000, 100_000, 1_000_000)


class Gunicorn:
    """gunicorn -c gunicorn.conf.py serving bench_app on a free loopback port."""

    def __init__(self, redis: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {**os.environ, **settings(redis)}
        env.pop("PORT", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "--pythonpath", "bench",
             "bench_app:create_app()"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
        try:
            wait_until_up(f"http://127.0.0.1:{self.port}/healthz", self.proc, "gunicorn")
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"gunicorn did not start; see {log}") from None
        # every worker must be up, not only the first one that answered
        deadline = time.monotonic() + 30
        expected = int(os.environ.get("WEB_CONCURRENCY", "2"))
        while len(self.workers()) < expected and time.monotonic() < deadline:
            time.sleep(0.1)

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def cpu_by_worker(self) -> dict[int, float]:
        """User + system CPU seconds of each worker process so far."""
        return {pid: cpu for pid in self.workers() if (cpu := proc_cpu(pid)) is not None}

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker processes so far."""
        return sum(self.cpu_by_worker().values())

    def stop(self) -> None:
        stop_process(self.proc, grace=15)


def log_problems(log: Path, offset: int) -> tuple[int, dict[str, int]]:
    """WARNING/ERROR lines the app wrote since `offset`: degraded answers, failures."""
    problems: dict[str, int] = {}
    with log.open("rb") as f:
        f.seek(offset)
        data = f.read()
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            msg = " ".join(str(entry.get("msg", "")).split()[:4])
            problems[msg] = problems.get(msg, 0) + 1
    return log.stat().st_size, problems


def reset_calls(r: redis.Redis) -> None:
    """Forget every call: records, indexes, repeat counters, escalation jobs; keep customers,
    the incident (its counters zeroed) and the roster."""
    patterns = ("{ivr}:call:*", "{ivr}:caller:*", "{ivr}:escalations:*", "rq:*", "{ivr}:queue:*",
                "{ivr}:calls:*")
    for pattern in patterns:
        batch = []
        for key in r.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) >= 5000:
                r.unlink(*batch)
                batch = []
        if batch:
            r.unlink(*batch)
    for incident_id in r.hkeys(keys.incidents_active()):
        r.hset(keys.incident_counters(incident_id), mapping={c: 0 for c in COUNTERS})


def forget_counts(r: redis.Redis, froms: list[str]) -> None:
    """Clear the repeat-caller window of the numbers about to call (earlier runs called too)."""
    from ivr.phone import normalize

    phones = {p for p in (normalize(f) for f in set(froms)) if p}
    pipe = r.pipeline(transaction=False)
    for phone in phones:
        pipe.unlink(keys.caller_calls(phone))
    pipe.execute()


def counters(r: redis.Redis) -> dict[str, int]:
    out: dict[str, int] = {}
    for incident_id in r.hkeys(keys.incidents_active()):
        for name, value in r.hgetall(keys.incident_counters(incident_id)).items():
            out[name] = out.get(name, 0) + int(value)
    return out


class Site:
    """One customer base: its own Redis database (customers, the incident, the roster) and
    its own gunicorn, so bases of different sizes can take turns under the same load."""

    def __init__(self, url: str, size: int, tmp: Path) -> None:
        self.url, self.size = url, size
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=60)
        self.svc = build_services(app_config(url), redis_timeout=5.0)
        self.log = tmp / f"gunicorn-{size}.log"
        self.log.touch()
        self.server: Gunicorn | None = None

    def seed(self) -> float:
        self.r.flushdb()
        took = seed_customers(self.r, 0, self.size)
        declare_incident(self.svc)
        seed_roster(self.svc)
        return took

    def start(self) -> None:
        self.server = Gunicorn(self.url, self.log)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.r.flushdb()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def requests(self, target: str, froms: list[str], run_id: int) -> list[bytes]:
        return signed_requests(TARGETS[target], froms, run_id, f"127.0.0.1:{self.port}")

    def measure(self, target: str, froms: list[str], run_id: int, concurrency: int,
                **load: Any) -> dict[str, Any]:
        assert self.server is not None
        requests = self.requests(target, froms, run_id)
        before = counters(self.r)
        offset = self.log.stat().st_size
        by0, rcpu0 = self.server.cpu_by_worker(), redis_cpu(self.r)
        result: LoadResult = run_load("127.0.0.1", self.port, requests,
                                      concurrency=concurrency, **load)
        by1, rcpu1 = self.server.cpu_by_worker(), redis_cpu(self.r)
        cpu0, cpu1 = sum(by0.values()), sum(by1.values())
        split = sorted((by1[p] - by0.get(p, 0.0) for p in by1), reverse=True)
        _, problems = log_problems(self.log, offset)
        after = counters(self.r)
        sent = max(result.sent, 1)
        out: dict[str, Any] = result.summary()
        out["_latencies"] = result.latencies
        out["app_cpu_us_per_request"] = round((cpu1 - cpu0) / sent * 1e6, 1)
        out["redis_cpu_us_per_request"] = round((rcpu1 - rcpu0) / sent * 1e6, 1)
        out["client_cpu_us_per_request"] = round(result.client_cpu / sent * 1e6, 1)
        out["sent"] = result.sent
        # how the work fell on the workers: [0.5, 0.5] is even; the connections decide it
        out["worker_cpu_share"] = [round(x / max(sum(split), 1e-9), 2) for x in split]
        out["log_warnings"] = problems
        out["error_samples"] = result.error_samples
        if target == "incoming":
            out["incident_counters"] = {k: after.get(k, 0) - before.get(k, 0)
                                        for k in ("calls", "affected_calls", "escalations")}
            out["errors"] += sum(problems.values())
        return out

    def sanity(self) -> None:
        """Unsigned requests are refused."""
        for target in ("minimal", "incoming"):
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}{TARGETS[target]}",
                                         data=b"CallSid=CA1&From=%2B819010000000",
                                         method="POST")
            try:
                urllib.request.urlopen(req, timeout=5)
                raise RuntimeError(f"{target} answered an unsigned request")
            except urllib.error.HTTPError as e:
                if e.code != 403:
                    raise RuntimeError(f"{target}: unsigned request got {e.code}") from None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = 0

    def next_run(self) -> int:
        self.run_id += 1
        return self.run_id

    def comparison(self, site: Site) -> dict[str, Any]:
        """The three targets take turns, `rounds` times (static, minimal, incoming, static,
        ...), so a change in the machine's background load falls on all three alike."""
        # One stream of callers across the rounds: a customer calls again only after all
        # 10,000 have called once, and the 20 who keep calling reach their third call.
        mix = CallerMix(list(range(site.size)), seed=11)
        rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
        for n in range(self.args.rounds):
            # as many distinct calls as a round can use: 1.5 x the most any round sent,
            # drawn ahead of the stream; the stream then moves on by the calls
            # /voice/incoming really made (the only target that stores them), so the calls
            # it did not reach are not skipped: skipped draws would make customers who did
            # call ring back sooner, and third calls (escalations) far more common than 2 %
            most = max((r["sent"] for runs in rounds.values() for r in runs), default=0)
            froms = copy.deepcopy(mix).take(min(self.args.requests, max(2000, int(most * 1.5))))
            for target in TARGETS:
                got = site.measure(target, froms, self.next_run(), self.args.concurrency,
                                   warmup=self.args.warmup, duration=self.args.duration)
                rounds[target].append(got)
                show(f"{target} {n + 1}", got)
            mix.take(min(rounds["incoming"][-1]["sent"], len(froms)))
        results: dict[str, Any] = {t: merge(runs) for t, runs in rounds.items()}
        print("  all rounds:")
        for target in TARGETS:
            show(target, results[target])
        inc, mini, stat = (results[t]["rps"] for t in ("incoming", "minimal", "static"))
        per_round = sorted(r["rps"] / m["rps"] for r, m in zip(
            rounds["incoming"], rounds["minimal"], strict=True) if m["rps"])
        results["ratios"] = {
            "incoming/minimal": round(inc / mini, 3) if mini else None,
            "incoming/static": round(inc / stat, 3) if stat else None,
            "minimal/static": round(mini / stat, 3) if stat else None,
            # what the throughput ratio would be if the app's CPU were all that limited it
            "incoming/minimal by app CPU": round(
                results["minimal"]["app_cpu_us_per_request"]
                / results["incoming"]["app_cpu_us_per_request"], 3),
            # the same with Redis and the load generator too, which share the machine's CPUs
            "incoming/minimal by all CPU": round(total_cpu(results["minimal"])
                                                 / total_cpu(results["incoming"]), 3),
            "incoming/minimal per round": [round(x, 3) for x in per_round],
            # robust to a burst of background load during one round
            "incoming/minimal median round": round(statistics.median(per_round), 3)
            if per_round else None}
        return results

    def sweep(self, sites: list[Site]) -> dict[str, Any]:
        """The same passes of calls against every size, sizes taking turns pass by pass.
        Known callers are 1,000 customers spread over the whole base, so the mix of calls
        (first, second, repeat; known, unknown, withheld) is the same at every size."""
        mixes = {site.size: CallerMix(random.Random(site.size).sample(range(site.size), 1000),
                                      seed=23) for site in sites}
        merged = {site.size: LoadResult() for site in sites}
        sent = {site.size: 0 for site in sites}
        cpu = {site.size: 0.0 for site in sites}
        p50s: dict[int, list[float]] = {site.size: [] for site in sites}
        for n in range(self.args.passes):
            # each pass starts at the next size, so no size always follows the same one
            for site in sites[n % len(sites):] + sites[:n % len(sites)]:
                assert site.server is not None
                froms = mixes[site.size].take(self.args.pass_size)
                requests = site.requests("incoming", froms, self.next_run())
                forget_counts(site.r, froms)
                cpu0 = site.server.cpu_seconds()
                got = run_load("127.0.0.1", site.port, requests,
                               concurrency=self.args.concurrency, warmup=0.0, duration=None,
                               limit=len(requests))
                cpu[site.size] += site.server.cpu_seconds() - cpu0
                into = merged[site.size]
                into.completed += got.completed
                into.errors += got.errors
                into.seconds += got.seconds
                into.latencies += got.latencies
                into.error_samples += got.error_samples
                sent[site.size] += got.sent
                p50s[site.size].append(round(got.percentile(0.5), 2))
                print(f"  pass {n + 1} {site.size:>9,} customers {got.rps:8.1f} req/s  "
                      f"p50 {got.percentile(0.5):6.2f} ms", flush=True)
        logic = self.caller_logic(sites)
        out: dict[str, Any] = {}
        for site in sites:
            r: dict[str, Any] = merged[site.size].summary()
            r["caller_logic_us_rounds"] = logic[site.size]
            r["caller_logic_us_median"] = round(statistics.median(logic[site.size]), 1)
            r["app_cpu_us_per_request"] = round(cpu[site.size] / max(sent[site.size], 1) * 1e6,
                                                1)
            r["keys"] = site.r.dbsize()
            r["passes_p50_ms"] = p50s[site.size]
            r["median_pass_p50_ms"] = round(statistics.median(p50s[site.size]), 2)
            out[str(site.size)] = r
        return out


    def caller_logic(self, sites: list[Site]) -> dict[int, list[float]]:
        """The part of /voice/incoming that touches Redis (call.answer_incoming), called in
        this process against each base in turn: the keyspace's effect without HTTP, gunicorn
        or threads in the way."""
        mixes = {site.size: CallerMix(random.Random(site.size).sample(range(site.size), 1000),
                                      seed=29) for site in sites}
        took: dict[int, list[float]] = {site.size: [] for site in sites}
        for n in range(self.args.logic_rounds):
            for site in sites[n % len(sites):] + sites[:n % len(sites)]:
                froms = mixes[site.size].take(self.args.logic_calls)
                forget_counts(site.r, froms)
                run = self.next_run()
                batch = [calls.CallInfo.parse(twilio_form(f"CA{run:06x}{i:026x}", f))
                         for i, f in enumerate(froms)]
                start = time.perf_counter()
                for info in batch:
                    calls.answer_incoming(site.svc, info)
                took[site.size].append(
                    round((time.perf_counter() - start) / len(batch) * 1e6, 1))
        for size, values in took.items():
            print(f"  caller logic in-process {size:>9,} customers: median "
                  f"{statistics.median(values):7.1f} µs/call  {values}", flush=True)
        return took


def total_cpu(result: dict[str, Any]) -> float:
    """CPU µs per request on the whole machine: web workers, Redis and the load generator."""
    return sum(result[name] for name in ("app_cpu_us_per_request", "redis_cpu_us_per_request",
                                         "client_cpu_us_per_request"))


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one target as one run: all requests over all measured seconds."""
    merged = LoadResult()
    for run in runs:
        merged.latencies += run.pop("_latencies")
        merged.completed += run["completed"]
        merged.seconds += run["seconds"]
        merged.reused += run["reused_requests"]
    out: dict[str, Any] = merged.summary()
    out["errors"] = sum(run["errors"] for run in runs)
    out["client_cpu_s"] = round(sum(run["client_cpu_s"] for run in runs), 2)
    sent = sum(run["sent"] for run in runs)
    for name in ("app_cpu_us_per_request", "redis_cpu_us_per_request",
                 "client_cpu_us_per_request"):
        out[name] = round(sum(run[name] * run["sent"] for run in runs) / max(sent, 1), 1)
    out["rounds_rps"] = [run["rps"] for run in runs]
    out["busiest_worker_share"] = [run["worker_cpu_share"][0] if run["worker_cpu_share"]
                                   else None for run in runs]
    warnings: dict[str, int] = {}
    for run in runs:
        for msg, n in run["log_warnings"].items():
            warnings[msg] = warnings.get(msg, 0) + n
    out["log_warnings"] = warnings
    out["error_samples"] = [e for run in runs for e in run["error_samples"]][:5]
    if "incident_counters" in runs[0]:
        out["incident_counters"] = {k: sum(run["incident_counters"][k] for run in runs)
                                    for k in runs[0]["incident_counters"]}
    return out


def show(name: str, r: dict[str, Any]) -> None:
    extra = ""
    if r.get("log_warnings"):
        extra = f"  warnings {r['log_warnings']}"
    if r.get("error_samples"):
        extra += f"  e.g. {r['error_samples'][0]}"
    share = f"  workers {r['worker_cpu_share']}" if r.get("worker_cpu_share") else ""
    print(f"  {name:<11} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:6.2f}  p95 {r['p95_ms']:6.2f}  "
          f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}  "
          f"cpu µs/req app {r.get('app_cpu_us_per_request', 0):.0f} "
          f"redis {r.get('redis_cpu_us_per_request', 0):.0f} "
          f"load {r.get('client_cpu_us_per_request', 0):.0f}{share}{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8,
                        help="rounds over the three targets (default 8: this VM's rounds "
                             "swing by a quarter, and the median of eight settles)")
    parser.add_argument("--duration", type=float, default=2.5,
                        help="measured seconds per target and round (default 2.5)")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="warm-up seconds per target and round (default 0.5)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=30_000,
                        help="most distinct signed calls built per target and round")
    parser.add_argument("--passes", type=int, default=5, help="sweep passes per size")
    parser.add_argument("--pass-size", type=int, default=1200, help="calls per sweep pass")
    parser.add_argument("--logic-rounds", type=int, default=6,
                        help="in-process caller-logic rounds per size (default 6)")
    parser.add_argument("--logic-calls", type=int, default=500,
                        help="calls per in-process caller-logic round (default 500)")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES),
                        help="customer counts of the sweep (default 1e3 1e4 1e5 1e6)")
    parser.add_argument("--seed-budget", type=float, default=90.0,
                        help="leave out the bigger bases once seeding has taken this long (s)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()

    sizes = sorted(set(args.sizes) | {10_000})
    out: dict[str, Any] = {"concurrency": args.concurrency, "passes": args.passes,
                           "pass_size": args.pass_size,
                           "gunicorn": {"workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
                                        "threads": int(os.environ.get("GUNICORN_THREADS", "4")),
                                        "worker_class": "gthread",
                                        "cmd_args": os.environ.get("GUNICORN_CMD_ARGS", "")}}
    with redis_url(databases=len(sizes)) as url, \
            tempfile.TemporaryDirectory(prefix="ivr-bench-web-") as tmp:
        bench = Bench(args)
        base = db_of(url)
        sites: list[Site] = []
        skipped: dict[str, Any] = {}
        seed_seconds = 0.0
        try:
            for i, size in enumerate(sizes):
                if seed_seconds > args.seed_budget:
                    skipped[str(size)] = {"skipped": f"seeding had taken {seed_seconds:.0f} s "
                                                     f"(budget {args.seed_budget:g} s)"}
                    print(f"customers {size:,}: left out, seeding budget used up")
                    continue
                site = Site(with_db(url, base + i), size, Path(tmp))
                took = site.seed()
                seed_seconds += took
                sites.append(site)
                print(f"customers {size:,}: seeded in {took:.1f} s", flush=True)
            for site in sites:
                site.start()
            main_site = next(s for s in sites if s.size == 10_000)
            main_site.sanity()
            print("comparison at 10,000 customers", flush=True)
            out["comparison"] = bench.comparison(main_site)
            ratios = out["comparison"]["ratios"]
            print(f"  ratios: incoming/minimal {ratios['incoming/minimal']}  "
                  f"incoming/static {ratios['incoming/static']}", flush=True)
            reset_calls(main_site.r)
            swept = [s for s in sites if s.size in args.sizes]
            if swept:
                print("customer-count sweep", flush=True)
                out["sweep"] = {**bench.sweep(swept), **skipped}
                for size, r in out["sweep"].items():
                    if "p50_ms" in r:
                        show(f"{int(size):,}", r)
            out["seed_seconds"] = round(seed_seconds, 1)
        finally:
            for site in sites:
                site.stop()
            out["gunicorn_log_lines"] = sum(sum(1 for _ in site.log.open("rb"))
                                            for site in sites)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
