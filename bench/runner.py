"""Run every benchmark against one private Redis, print the summary, write bench/RESULTS.md.

    bench/run [--quick] [--no-write] [--storm]

Each benchmark is its own script (runnable alone, see its docstring) started here as a child
process with REDIS_URL pointing at the Redis of this run, and a time limit. Their JSON
results and printed output are gathered into the summary and into bench/RESULTS.md.
The incident storm (bench/storm.py, 5+ minutes) runs only with --storm; it writes its own
section of RESULTS.md, which a rewrite here keeps as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, redis_url  # noqa: E402
from storm_checks import NOTES_END, NOTES_START, kept_section  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "RESULTS.md"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    redis_server = subprocess.run(["redis-server", "--version"], capture_output=True,
                                  text=True).stdout.split()
    server = next((w[2:] for w in redis_server if w.startswith("v=")), "?")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "memory": mem,
        "kernel": platform.release(), "python": platform.python_version(),
        "redis_server": server, "redis_py": metadata.version("redis"),
        "gunicorn": metadata.version("gunicorn"), "flask": metadata.version("flask"),
        "twilio": metadata.version("twilio"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


class Step:
    """One benchmark script run as a child: output echoed and kept, JSON result read."""

    def __init__(self, name: str, argv: list[str], limit: float, tmp: Path,
                 json_out: bool = True) -> None:
        self.name, self.limit = name, limit
        self.json_path = tmp / f"{name}.json" if json_out else None
        self.argv = [sys.executable, *argv] + (["--json", str(self.json_path)]
                                               if self.json_path else [])
        self.output = ""
        self.result: dict[str, Any] | None = None
        self.seconds = 0.0
        self.failed = ""

    def run(self, env: dict[str, str]) -> None:
        print(f"\n== {self.name}: {' '.join(shlex.quote(a) for a in self.argv[1:])}",
              flush=True)
        start = time.monotonic()
        lines: list[str] = []
        # its own process group, so gunicorn and the workers it starts go with it
        proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True)

        def echo() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                print("   " + line, end="", flush=True)
                lines.append(line)

        reader = threading.Thread(target=echo, daemon=True)
        reader.start()
        try:
            proc.wait(self.limit)
        except subprocess.TimeoutExpired:
            self.failed = f"stopped after its {self.limit:g} s limit"
        finally:
            stop_group(proc)  # also anything it left behind (a gunicorn, a worker)
        reader.join(5)
        self.seconds = time.monotonic() - start
        self.output = "".join(lines)
        if not self.failed and proc.returncode:
            self.failed = f"exit status {proc.returncode}"
        if self.json_path and self.json_path.exists():
            self.result = json.loads(self.json_path.read_text())
        elif self.json_path and not self.failed:
            self.failed = "no result written"
        if self.failed:
            print(f"   !! {self.name} {self.failed}", flush=True)
        print(f"   ({self.name}: {self.seconds:.0f} s)", flush=True)


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the child's process group, SIGKILL if it is still there after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def ratio_verdict(ratio: float) -> str:
    """The throughput target: 0.9x the minimal view, never below 0.8x."""
    if ratio >= 0.9:
        return "met"
    return "NOT met (above the 0.8 floor)" if ratio >= 0.8 else "NOT met"


def rate_verdict(worst: float, ideal: list[float]) -> str:
    """Within 5 % of the limit; where the messages' own rule caps the rate lower (an ideal
    limiter measured on the same messages), against that ceiling."""
    if worst >= 0.95:
        return "met"
    if ideal and min(ideal) >= 0.95:
        return "NOT met where the rule's own ceiling is lower; met against it"
    return "NOT met"


def kept_storm_row(kept: str | None) -> list[str] | None:
    """The targets-table row of a storm section kept from an earlier run (bench/run without
    --storm), read from its opening line."""
    found = re.search(r"on (\d{4}-\d\d-\d\d \d\d:\d\d) UTC.*?\*\*(.+?)\*\*", kept or "")
    if not found:
        return None
    ok = found.group(2) == "every check passed"
    return [f"incident storm (kept from the run of {found.group(1)} UTC)", "every check passes",
            found.group(2), verdict(ok)]


def parse_intent(text: str) -> float | None:
    found = re.search(r"best round:\s+([\d,]+) utterances/s", text)
    return float(found.group(1).replace(",", "")) if found else None


def parse_rates(text: str) -> list[dict[str, Any]]:
    """Rows of sms_rate_bench's table: (mps, sizes,) workers, ..., rate, share, max 1 s."""
    rows = []
    for line in text.splitlines():
        cells = line.split()
        pct = [i for i, c in enumerate(cells) if re.fullmatch(r"[\d.]+%", c)]
        if not pct or len(cells) < pct[0] + 2:
            continue
        i = pct[0]
        try:
            row: dict[str, Any] = {"share": float(cells[i][:-1]) / 100,
                                   "rate": float(cells[i - 1]),
                                   "max_1s": int(cells[pct[-1] + 1])}
            if len(pct) > 1:  # ... rate, % of limit, ideal, % of ideal, max, tries
                row["of_ideal"] = float(cells[pct[1]][:-1]) / 100
            if len(cells) >= 9:  # mps, sizes, workers, messages, segments, rate, %, ..., tries
                row.update(mps=float(cells[0]), sizes=cells[1], workers=int(cells[2]))
            else:
                row.update(workers=int(cells[0]))
        except (ValueError, IndexError):
            continue
        rows.append(row)
    return rows


def summarise(steps: dict[str, Step], info: dict[str, Any]) -> tuple[list[list[str]], str]:
    """The targets table (what, target, measured, verdict) and a plain-text summary."""
    table: list[list[str]] = []
    web = steps["webhook"].result or {}
    comp = web.get("comparison") or {}
    if comp:
        ratios = comp["ratios"]
        r = ratios.get("incoming/minimal median round") or ratios["incoming/minimal"]
        table.append(["/voice/incoming throughput vs minimal view", "≥ 0.9× (never < 0.8×)",
                      f"{r:.2f}× median of {len(comp['static']['rounds_rps'])} rounds (all "
                      f"rounds: {comp['incoming']['rps']:.0f} vs {comp['minimal']['rps']:.0f} "
                      f"req/s = {ratios['incoming/minimal']:.2f}×)",
                      ratio_verdict(r)])
        table.append(["/voice/incoming throughput vs static TwiML", "(reference)",
                      f"{ratios['incoming/static']:.2f}× (static "
                      f"{comp['static']['rps']:.0f} req/s)", ""])
        p99 = comp["incoming"]["p99_ms"]
        table.append([f"/voice/incoming p99 at {web.get('concurrency')} connections",
                      "≤ 25 ms", f"{p99:.1f} ms (p50 {comp['incoming']['p50_ms']:.1f}, "
                      f"p95 {comp['incoming']['p95_ms']:.1f})", verdict(p99 <= 25)])
        errors = sum(comp[t]["errors"] for t in ("static", "minimal", "incoming"))
        table.append(["errors (non-200, non-TwiML, degraded answers)", "0", str(errors),
                      verdict(errors == 0)])
    sweep = {k: v for k, v in (web.get("sweep") or {}).items() if "p50_ms" in v}
    if len(sweep) >= 2:
        sizes = sorted(sweep, key=int)
        lo, hi = sweep[sizes[0]], sweep[sizes[-1]]
        lo50 = lo.get("median_pass_p50_ms", lo["p50_ms"])
        hi50 = hi.get("median_pass_p50_ms", hi["p50_ms"])
        change = hi50 / lo50 if lo50 else float("nan")
        lo_logic, hi_logic = lo.get("caller_logic_us_median"), hi.get("caller_logic_us_median")
        logic = hi_logic / lo_logic if lo_logic and hi_logic else float("nan")
        if change <= 1.15:
            flat = "met (p50 at most 15 % higher)"
        elif logic <= 1.15:
            flat = ("NOT met over HTTP, but the Redis path in-process is flat: other load on "
                    "the machine; rerun")
        else:
            flat = "NOT met"
        table.append([f"latency {int(sizes[0]):,} → {int(sizes[-1]):,} customers",
                      "flat", f"p50 (median pass) {lo50:.1f} → {hi50:.1f} ms ({change:.2f}×), "
                      f"p99 {lo['p99_ms']:.1f} → {hi['p99_ms']:.1f} ms; Redis path "
                      f"in-process {lo_logic} → {hi_logic} µs/call ({logic:.2f}×)", flat])
    scope = (steps["scope"].result or {}).get("sizes") if "scope" in steps else None
    if scope:
        sizes = sorted(scope, key=int)
        top = scope[sizes[-1]]["ratios"]
        table.append([f"caller cost, {int(sizes[0]):,} → {int(sizes[-1]):,} numbers in an "
                      "incident's scope", "flat", f"Redis CPU {top['redis_cpu_us']:.2f}×, app "
                      f"CPU {top['app_cpu_us']:.2f}×, wall {top['wall_us']:.2f}× a call",
                      verdict(max(top.values()) <= 1.15)])
    fan = steps["fanout"].result
    if fan:
        table.append([f"queue the SMS of {fan['recipients']:,} recipients", "< 10 s",
                      f"{fan['seconds']:.2f} s ({fan['jobs']:,} jobs, "
                      f"{fan['recipients_per_s']:,}/s)", verdict(fan["seconds"] < 10)])
    rates = parse_rates(steps["sms_rate"].output)
    if rates:
        worst = min(rates, key=lambda x: x["share"])
        best = max(rates, key=lambda x: x["share"])
        over = [x for x in rates if "mps" in x and x["max_1s"] > x["mps"]]
        ideal = [x["of_ideal"] for x in rates if "of_ideal" in x]
        shown = f"{worst['share']:.1%} – {best['share']:.1%} of the limit"
        if ideal:
            shown += (f"; {min(ideal):.1%} – {max(ideal):.1%} of what an ideal limiter grants "
                      "the same messages under the same rule (see SMS send rate)")
        table.append(["SMS send rate, 1/2/4 workers", "within 5 % of IVR_SMS_MPS", shown,
                      rate_verdict(worst["share"], ideal)])
        if any("mps" in x for x in rates):
            table.append(["SMS segments in any 1 s", "never above the limit",
                          f"max {max(x['max_1s'] for x in rates)} "
                          f"({len(over)} runs above)", verdict(not over)])
    rate = parse_intent(steps["intent"].output)
    if rate:
        table.append(["intent classification, one core", "> 20,000 utterances/s",
                      f"{rate:,.0f}/s", verdict(rate > 20_000)])
    storm = steps["storm"].result if "storm" in steps else None
    if storm:
        passed = sum(1 for c in storm["checks"] if c["ok"])
        s = storm["settings"]
        table.append([f"incident storm: {s['cps']:g} calls/s for {s['minutes']:g} min",
                      "every check passes", f"{passed} of {len(storm['checks'])} checks "
                      f"({storm['figures']['calls_per_second']} calls/s)",
                      verdict(passed == len(storm["checks"]))])
    elif (kept := kept_storm_row(info.get("kept_storm"))) is not None:
        table.append(kept)
    mem = steps["memory"].result
    if mem:
        table.append(["Redis memory per 100,000 customers", "(measured)",
                      f"{mem['mb_per_100k_customers']} MB ({mem['bytes_per_customer']} B "
                      "each)", ""])
        table.append(["Redis memory per 10,000 call records", "(measured)",
                      f"{mem['mb_per_10k_calls']} MB ({mem['bytes_per_call']} B each)", ""])
    width = max(len(row[0]) for row in table) if table else 10
    text = "\n".join(f"{row[0]:<{width}}  {row[2]:<48} {row[3]}" for row in table)
    return table, text


def markdown(steps: dict[str, Step], info: dict[str, Any], table: list[list[str]],
             command: str, started: datetime, seconds: float) -> str:
    out = ["# Benchmark results", "",
           f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC, in {seconds:.0f} s. "
           "Every number below comes from that one run; rerun the command to refresh them.",
           "", "## Machine", "",
           f"- {info['cpus']} CPUs: {info['cpu']}; {info['memory']} memory; Linux "
           f"{info['kernel']}",
           f"- Python {info['python']}, redis-server {info['redis_server']}, redis-py "
           f"{info['redis_py']}, gunicorn {info['gunicorn']}, Flask {info['flask']}, twilio "
           f"{info['twilio']}",
           f"- commit {info['commit']}",
           f"- load average before / after the run: {info['load_before']} / "
           f"{info['load_after']} (anything else running on the machine shares its CPUs "
           "with the server, Redis and the load generator)", "",
           "## Targets (issue #5)", "",
           "| what | target | measured | |", "|---|---|---|---|"]
    out += [f"| {' | '.join(row)} |" for row in table]
    web = steps["webhook"].result or {}
    comp = web.get("comparison")
    if comp:
        g = web["gunicorn"]
        out += ["", "## Webhooks: /voice/incoming against two baselines", "",
                f"One gunicorn, `gunicorn.conf.py` as in production ({g['worker_class']}, "
                f"{g['workers']} workers x {g['threads']} threads, JSON logs at INFO), serving "
                "bench/bench_app.py on 127.0.0.1. Load from a separate process "
                "(bench/loadgen.py, asyncio, HTTP/1.1 keep-alive), "
                f"{web['concurrency']} connections, closed loop, each connection replaced about "
                "every 0.5 s (held for a whole run, all 16 can land on one of the two workers "
                "and leave the other idle: the last column shows the split); every request a "
                "distinct signed call. Callers: 60 % known customers (40 % of them affected by the "
                "active incident, 5 % VIP, 10 % English), 30 % unknown numbers, 10 % "
                "withheld; 2 % of calls from 20 customers who keep calling (from their third "
                "call: warm transfer to an SV). 10,000 customers, one incident (audience "
                "all), three SVs on call. The targets take turns, "
                f"{len(comp['static']['rounds_rps'])} rounds each.", "",
                "| view | req/s | per round | p50 ms | p95 ms | p99 ms | max ms | errors | "
                "app CPU µs/req | Redis CPU µs/req | load generator CPU µs/req | "
                "busiest worker's CPU share per round |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, path in (("static", "/bench/static"), ("minimal", "/bench/minimal"),
                           ("incoming", "/voice/incoming")):
            r = comp[name]
            out.append(f"| `{path}` | {r['rps']:.0f} | "
                       f"{' / '.join(f'{x:.0f}' for x in r['rounds_rps'])} | "
                       f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                       f"{r['max_ms']:.1f} | {r['errors']} | {r['app_cpu_us_per_request']:.0f}"
                       f" | {r['redis_cpu_us_per_request']:.0f} | "
                       f"{r['client_cpu_us_per_request']:.0f} | "
                       f"{' / '.join(str(x) for x in r.get('busiest_worker_share', []))} |")
        ratios = comp["ratios"]
        counters = comp["incoming"].get("incident_counters", {})
        out += ["", f"Ratios: incoming/minimal **{ratios.get('incoming/minimal median round')}** "
                "as the median of the rounds (each round's incoming against the minimal run "
                "just before it; sorted: "
                f"{', '.join(str(x) for x in ratios['incoming/minimal per round'])}), "
                f"{ratios['incoming/minimal']} over all rounds together, "
                f"incoming/static {ratios['incoming/static']}, minimal/static "
                f"{ratios['minimal/static']}; by the workers' CPU per request, incoming/minimal "
                f"{ratios.get('incoming/minimal by app CPU')}, and by all the CPU the "
                "machine spent per request (workers, Redis and the load generator, which "
                f"share its CPUs) {ratios.get('incoming/minimal by all CPU')}: the "
                "throughput ratio a CPU-bound run would show. App CPU is the gunicorn "
                "workers' user+system time per request sent (from /proc), Redis CPU from INFO "
                "cpu, the load generator's from its own process.",
                f"Calls stored during the incoming runs: {counters.get('calls', '?')}, of "
                f"which affected {counters.get('affected_calls', '?')}, escalated "
                f"{counters.get('escalations', '?')}. The load generator used "
                f"{comp['incoming']['client_cpu_us_per_request']:.0f} µs of CPU per incoming "
                "request on the same machine."]
        conns = int(web.get("concurrency") or 16)
        implied = {t: conns / comp[t]["rps"] * 1000 for t in ("static", "minimal", "incoming")
                   if comp[t]["rps"]}
        if implied:
            out += ["", f"Latency at {conns} connections in a closed loop is set by throughput "
                    "(Little's law: mean latency = connections / req/s): "
                    + ", ".join(f"{t} {ms:.1f} ms" for t, ms in implied.items())
                    + f". A p99 of 25 ms needs a mean well under it: far more than "
                    f"{conns / 0.025:.0f} req/s, with the load generator on the same two CPUs. "
                    "The open-loop latency a real incident brings (30 new calls a second with "
                    "all their webhooks) is in the incident storm's section. The same "
                    "comparison under other gunicorn settings (bench/server_settings.py, about "
                    "15 minutes) is in bench/SERVER_SETTINGS.md."]
        warnings = {t: comp[t]["log_warnings"] for t in ("static", "minimal", "incoming")
                    if comp[t]["log_warnings"]}
        if warnings:
            out += ["", f"Warnings in the app log: `{json.dumps(warnings, ensure_ascii=False)}`"]
    sweep = web.get("sweep") or {}
    if sweep:
        out += ["", "## Webhook latency by customer count", "",
                "Each base in its own Redis database with its own gunicorn; the same kind of "
                f"calls against each ({web.get('passes')} passes of {web.get('pass_size'):,} "
                "requests, the bases taking turns pass by pass; known callers are 1,000 "
                "customers spread over the whole base; the callers' repeat counters cleared "
                f"before each pass) at {web.get('concurrency')} connections.", "",
                "| customers | req/s | p50 ms | p50 per pass | p95 ms | p99 ms | errors | "
                "app CPU µs/req | Redis path in-process µs/call (median) | keys in its database |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for size, r in sorted(sweep.items(), key=lambda kv: int(kv[0])):
            if "skipped" in r:
                out.append(f"| {int(size):,} | {r['skipped']} | | | | | | | | |")
                continue
            out.append(f"| {int(size):,} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
                       f"{' / '.join(f'{x:.1f}' for x in r['passes_p50_ms'])} | "
                       f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
                       f"{r['app_cpu_us_per_request']:.0f} | "
                       f"{r.get('caller_logic_us_median', '')} | {r['keys']:,} |")
        out += ["", "The flatness verdict compares the median pass of the smallest and the largest "
                "base, so one pass slowed by something else on the machine does not decide it. "
                "The Redis path in-process is call.answer_incoming (the one-script caller logic) "
                "called from the benchmark process against each base in turn (no HTTP, no "
                "gunicorn): how the keyspace's size alone moves the webhook's Redis work. "
                f"Seeding the customers took {web.get('seed_seconds')} s in all."]
    prof = steps["profile"].result
    if prof:
        out += ["", "## In-process cost (no gunicorn, no HTTP, one thread)", "",
                "bench/profile_incoming.py calls the same WSGI app directly: the cost of each "
                "view without the server, the sockets or the other threads.", "",
                "| view | µs/request (wall) | CPU µs/request |", "|---|---|---|"]
        for name in ("static", "minimal", "incoming"):
            out.append(f"| {name} | {prof[name]['us_per_request']} | "
                       f"{prof[name]['cpu_us_per_request']} |")
        out += ["", "Throughput ratios in-process: " + ", ".join(
            f"{k} {v}" for k, v in prof["ratios"].items()) + ". Wall time includes waiting "
            "for Redis (and, on a busy machine, for a CPU); CPU time is this process only.", "",
            "The steps of /voice/incoming, CPU µs each (the view runs them in this order):",
            "", "| step | CPU µs |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in prof.get("steps_cpu_us", {}).items()]
    fan = steps["fanout"].result
    if fan:
        out += ["", "## SMS fan-out", "",
                f"{fan['customers']:,} mobile customers, all affected; `worker.sms.fan_out` run "
                f"in-process: {fan['recipients']:,} recipients frozen and queued as "
                f"{fan['jobs']:,} send_batch jobs of {fan['batch_size']} in "
                f"**{fan['seconds']:.2f} s** ({fan['recipients_per_s']:,} recipients/s, "
                f"{fan['jobs_per_s']:,} jobs/s); {fan['recipients_in_jobs']:,} numbers found "
                "in the queued jobs."]
    for key, title in (("scope", "Incidents scoped by numbers (bench/scope_bench.py)"),
                       ("sms_rate", "SMS send rate (bench/sms_rate_bench.py --workers 1 2 4)"),
                       ("intent", "Intent classification (bench/intent_bench.py)")):
        step = steps[key]
        out += ["", f"## {title}", "", "```", step.output.rstrip() or "(no output)", "```"]
    mem = steps["memory"].result
    if mem:
        out += ["", "## Redis memory", "",
                f"INFO used_memory before and after: {mem['customers']:,} customers (hash "
                f"plus index sets) → **{mem['bytes_per_customer']} B each**, "
                f"{mem['mb_per_100k_customers']} MB per 100,000 (the hash "
                f"{mem['customer_hash_bytes']} B, the index sets "
                f"{mem['customer_index_bytes']} B); {mem['calls']:,} calls stored by the real "
                f"answer_incoming → **{mem['bytes_per_call']} B each**, "
                f"{mem['mb_per_10k_calls']} MB per 10,000 (the record hash "
                f"{mem['call_hash_bytes']} B; the rest is the recent/active indexes and the "
                "caller's repeat window)."]
    failed = [f"- {s.name}: {s.failed}" for s in steps.values() if s.failed]
    if failed:
        out += ["", "## Failures", ""] + failed
    out += ["", "## How", "",
            "`bench/run` starts its own redis-server on a free loopback port (or uses "
            "`REDIS_URL`, whose database and the three after it must be empty: the benchmarks "
            "flush them) and runs "
            "each script with a time limit: "
            + ", ".join(f"`{' '.join(shlex.quote(a) for a in s.argv[1:] if not a.endswith('.json') and a != '--json')}` ({s.seconds:.0f} s)"  # noqa: E501
                        for s in steps.values()) + ".", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs and no 1,000,000-customer step (a smoke test)")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--storm", action="store_true",
                        help="also run the incident storm (bench/storm.py, 5+ minutes)")
    args = parser.parse_args()
    command = "bench/run" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    started = datetime.now(UTC)
    begun = time.monotonic()
    info = machine()
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp_name, \
            redis_url(databases=4) as url:
        tmp = Path(tmp_name)
        env = {**os.environ, "REDIS_URL": url, "IVR_BENCH_REDIS_CHECKED": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        web_args = ["bench/webhook_bench.py"]
        if quick:
            web_args += ["--rounds", "2", "--duration", "1.5", "--passes", "1",
                         "--sizes", "1000", "10000", "100000"]
        steps = {
            "intent": Step("intent", ["bench/intent_bench.py"], 120, tmp, json_out=False),
            "memory": Step("memory", ["bench/memory_bench.py"], 240, tmp),
            "profile": Step("profile", ["bench/profile_incoming.py", "--calls",
                                        "500" if quick else "1000"], 180, tmp),
            "webhook": Step("webhook", web_args, 420, tmp),
            "fanout": Step("fanout", ["bench/fanout_bench.py"], 180, tmp),
            "scope": Step("scope", ["bench/scope_bench.py"] + (["--calls", "500"] if quick
                                                                else []), 240, tmp),
            "sms_rate": Step("sms_rate", ["bench/sms_rate_bench.py", "--workers", "1", "2",
                                          "4"], 240, tmp, json_out=False),
        }
        if args.storm:
            storm_args = ["-m", "bench.storm"] + (["--minutes", "1"] if quick else []) \
                + (["--no-write"] if args.no_write else [])
            steps["storm"] = Step("storm", storm_args, 900, tmp)
        for step in steps.values():
            step.run(env)
    seconds = time.monotonic() - begun
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # the storm's section (written by bench/storm.py, this run or an earlier one) stays
    previous = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    kept = kept_section(previous)
    notes = kept_section(previous, (NOTES_START, NOTES_END))  # hand-written: kept too
    info["kept_storm"] = kept
    table, text = summarise(steps, info)
    print("\n== summary\n" + text)
    if not args.no_write:
        text = markdown(steps, info, table, command, started, seconds) + "\n"
        RESULTS.write_text(text + (f"\n{notes}\n" if notes else "")
                           + (f"\n{kept}\n" if kept else ""), encoding="utf-8")
        print(f"\nwrote {RESULTS.relative_to(ROOT)} ({seconds:.0f} s in all)")
    if any(s.failed for s in steps.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
