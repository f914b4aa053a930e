"""The webhook comparison under other gunicorn settings: what the server decides, not the
caller logic, in the p99 at 16 connections and in the incoming/minimal ratio.

Run from the repository root (about a minute and a half per setting and pass):
    .venv/bin/python bench/server_settings.py [--rounds 6] [--passes 2] [--no-write]

Runs bench/webhook_bench.py's comparison at 10,000 customers (no customer-count sweep) once
per setting, the settings taking turns pass after pass so a change in the machine's load
falls on all of them, and writes bench/SERVER_SETTINGS.md (machine, date, command). The
settings reach gunicorn as production's do: WEB_CONCURRENCY and GUNICORN_THREADS read by
gunicorn.conf.py, and gunicorn's own GUNICORN_CMD_ARGS for the worker class.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402
from runner import machine  # noqa: E402

OUT = ROOT / "bench" / "SERVER_SETTINGS.md"
TARGETS = ("static", "minimal", "incoming")
P99_TARGET_MS = 25.0

SETTINGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("gthread, 2 workers x 4 threads (production)",
     {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"}),
    ("gthread, 4 workers x 1 thread", {"WEB_CONCURRENCY": "4", "GUNICORN_THREADS": "1"}),
    ("gthread, 3 workers x 2 threads", {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "2"}),
    ("sync, 3 workers", {"WEB_CONCURRENCY": "3", "GUNICORN_CMD_ARGS": "--worker-class sync"}),
    ("sync, 4 workers", {"WEB_CONCURRENCY": "4", "GUNICORN_CMD_ARGS": "--worker-class sync"}),
)


def measure(env: dict[str, str], rounds: int, tmp: Path) -> dict[str, Any]:
    """One webhook_bench comparison under `env`; its JSON result's comparison part."""
    out = tmp / "webhook.json"
    run = subprocess.run(
        [sys.executable, "bench/webhook_bench.py", "--rounds", str(rounds), "--sizes",
         "--json", str(out)],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        sys.exit(f"webhook_bench failed under {env}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    comparison: dict[str, Any] = json.loads(out.read_text())["comparison"]
    return comparison


def row(name: str, passes: list[dict[str, Any]], production: list[dict[str, Any]]
        ) -> list[str]:
    """A setting's figures: each target's req/s and p99 (median of the passes), the ratios,
    and /voice/incoming's req/s against the production setting's."""
    def med(runs: list[dict[str, Any]], target: str, field: str) -> float:
        return statistics.median(p[target][field] for p in runs)

    cells = [name]
    for target in TARGETS:
        cells.append(f"{med(passes, target, 'rps'):.0f} / {med(passes, target, 'p99_ms'):.1f}")
    cells.append("yes" if med(passes, "minimal", "p99_ms") <= P99_TARGET_MS else "no")
    rounds = sorted(x for p in passes for x in p["ratios"]["incoming/minimal per round"])
    cells.append(f"{statistics.median(rounds):.3f}")
    by_cpu = statistics.median(p["ratios"]["incoming/minimal by all CPU"] for p in passes)
    cells.append(f"{by_cpu:.3f}")
    cells.append(f"{med(passes, 'incoming', 'rps') / med(production, 'incoming', 'rps'):.2f}")
    return cells


def markdown(rows: list[list[str]], info: dict[str, Any], argv: list[str]) -> str:
    head = ["gunicorn setting", "static req/s / p99 ms", "minimal req/s / p99 ms",
            "incoming req/s / p99 ms", f"minimal within p99 ≤ {P99_TARGET_MS:g} ms",
            "incoming/minimal (median round)", "incoming/minimal by all CPU",
            "incoming req/s vs production's"]
    lines = [
        "# The webhook comparison under other gunicorn settings",
        "",
        f"Written by `{' '.join(['.venv/bin/python', 'bench/server_settings.py', *argv])}` "
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: bench/webhook_bench.py's comparison "
        "(the three targets taking turns, 16 connections in a closed loop, the load generator "
        "on the same machine) under each setting, the settings taking turns pass after pass. "
        "req/s and p99 are the median of the passes; the ratio is the median of every round "
        "of every pass.",
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; Python "
        f"{info['python']}, gunicorn {info['gunicorn']}, redis-server {info['redis_server']};"
        f" commit {info['commit']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "In a closed loop latency follows throughput (mean latency = 16 / req/s), so a p99 "
        f"under {P99_TARGET_MS:g} ms needs a view well above 1,000 req/s on these two CPUs, "
        "with the load generator on them too. The minimal view does one Redis round trip and "
        "no caller logic: under a setting where even it is above the p99 figure, no change "
        "to /voice/incoming brings that one under it. The ratio compares /voice/incoming with "
        "the minimal view under the same setting, so a setting that slows the minimal view "
        "more than /voice/incoming raises the ratio without answering callers any faster; "
        "the last column says whether callers are answered faster than under production's.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per comparison")
    parser.add_argument("--passes", type=int, default=2, help="comparisons per setting")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    info = machine()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="ivr-bench-settings-") as tmp:
        for n in range(args.passes):
            for name, env in SETTINGS:
                got = measure(env, args.rounds, Path(tmp))
                results[name].append(got)
                print(f"pass {n + 1} {name}: " + "  ".join(
                    f"{t} {got[t]['rps']:.0f} req/s p99 {got[t]['p99_ms']:.1f} ms"
                    for t in TARGETS)
                    + f"  ratio {got['ratios']['incoming/minimal median round']}", flush=True)
    production = results[SETTINGS[0][0]]
    rows = [row(name, passes, production) for name, passes in results.items()]
    text = markdown(rows, info, sys.argv[1:])
    print(text)
    if not args.no_write:
        OUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
