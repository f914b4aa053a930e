"""The intent classifier: its cost per utterance and at start, and its accuracy.

Run from the repository root: python bench/intent_bench.py [--rounds 7] [--starts 3]

Targets (issue 16): p99 under 1 ms an utterance on one core, the web worker started in
under 2 s. Every figure is printed beside the same figure for a baseline measured in the
same run: the lexicon as it was before the structure rule (flows/intents.yaml of commit
BASELINE, read with `git show`), on the same engine, utterances and core, so a ratio is
what the change costs, whatever the machine's load did to both.

- per utterance: every utterance of tests/intents/corpus.yaml (both sets), timed one by
  one with perf_counter_ns, `rounds` passes after a warm-up; p50, p99, max and the best
  pass's rate ("best round", which bench/runner.py reads).
- worker start: a fresh `python -c` that imports ivr and runs create_app() (flows, lexicon,
  prompts, the services; Redis is a socket that refuses at once, so the start-up upgrade
  is skipped as it is when Redis is down), timed from spawn to return; median of `starts`,
  each after an untimed start.
- precision and recall per label on the held-out test set (with the targets of
  ivr/intent_eval.py) and on the tune set, each apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.intent import Lexicon, load_lexicon  # noqa: E402
from ivr.intent_eval import load_corpus, score  # noqa: E402

BASELINE = "f81ecd7"  # main before issue 16: the lexicon without the structure rule
START = ("import time; t = time.perf_counter(); from ivr import create_app; create_app(); "
         "print(time.perf_counter() - t)")


def per_utterance(lexicon: Lexicon, texts: list[str], rounds: int) -> dict[str, float]:
    classify = lexicon.classify
    for text in texts:  # warm up
        classify(text)
    samples: list[int] = []
    best = 0.0
    clock = time.perf_counter_ns
    for _ in range(rounds):
        began = clock()
        for text in texts:
            t0 = clock()
            classify(text)
            samples.append(clock() - t0)
        best = max(best, len(texts) / ((clock() - began) / 1e9))
    samples.sort()
    return {"p50": samples[len(samples) // 2] / 1000,
            "p99": samples[int(len(samples) * 0.99)] / 1000,
            "max": samples[-1] / 1000, "rate": best}


def worker_starts(flows: list[Path], starts: int) -> list[float]:
    """Median seconds from spawning a Python to create_app() returning, for each flows/
    folder; one untimed start each first (bytecode and disk caches), then the folders in
    turn, so a change in the machine's load falls on all of them alike."""
    def start(folder: Path) -> float:
        env = {**os.environ, "REDIS_URL": "unix:///nonexistent/ivr-bench.sock",
               "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "bench",
               "PUBLIC_BASE_URL": "https://bench.invalid", "IVR_ADMIN_TOKEN": "bench",
               "IVR_FLOWS_DIR": str(folder), "IVR_LOG_LEVEL": "ERROR"}
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", START], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        return time.perf_counter() - began

    for folder in flows:
        start(folder)
    times: list[list[float]] = [[] for _ in flows]
    for _ in range(starts):
        for i, folder in enumerate(flows):
            times[i].append(start(folder))
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed passes (default 7)")
    parser.add_argument("--starts", type=int, default=3, help="worker starts (default 3)")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):  # one core, as a gunicorn worker has
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    corpus = load_corpus()
    texts = [e["text"] for name in ("tune", "test") for e in corpus[name]]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "flows"
        shutil.copytree(ROOT / "flows", old)
        (old / "intents.yaml").write_bytes(subprocess.run(
            ["git", "show", f"{BASELINE}:flows/intents.yaml"], cwd=ROOT, check=True,
            capture_output=True).stdout)

        began = time.perf_counter()
        new_lexicon = load_lexicon(ROOT / "flows" / "intents.yaml")
        new_load = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        old_lexicon = load_lexicon(old / "intents.yaml")
        old_load = (time.perf_counter() - began) * 1000

        new = per_utterance(new_lexicon, texts, args.rounds)
        old_figures = per_utterance(old_lexicon, texts, args.rounds)
        new_start, old_start = worker_starts([ROOT / "flows", old], args.starts)

    print(f"corpus: {len(texts)} utterances x {args.rounds} rounds, one core; baseline: "
          f"flows/intents.yaml of {BASELINE} (before the structure rule)")
    print(f"{'':<24}{'now':>12}{'baseline':>12}{'ratio':>8}  target")
    rows = [("lexicon load + compile", new_load, old_load, "ms", ""),
            ("p50 per utterance", new["p50"], old_figures["p50"], "µs", ""),
            ("p99 per utterance", new["p99"], old_figures["p99"], "µs", "< 1000 µs"),
            ("max per utterance", new["max"], old_figures["max"], "µs", ""),
            ("web worker start", new_start * 1000, old_start * 1000, "ms", "< 2000 ms")]
    for name, now, then, unit, target in rows:
        print(f"{name:<24}{now:>9.1f} {unit:<2}{then:>9.1f} {unit:<2}{now / then:>7.2f}x  "
              f"{target}")
    print(f"best round:   {new['rate']:,.0f} utterances/s (baseline "
          f"{old_figures['rate']:,.0f}/s)")
    met = new["p99"] < 1000 and new_start < 2
    for name in ("test", "tune"):  # the held-out set first: its figures are the ones that count
        result = score(new_lexicon, corpus[name], name)
        below = result.below_target()
        verdict = "met" if not below else "NOT met: " + "; ".join(below)
        print(f"\nprecision and recall, {name} set"
              + (f" (held out; targets {verdict})" if name == "test" else ""))
        print(result.table(misses=False))
        met = met and (name != "test" or not below)
    print("\ntargets: " + ("met" if met else "NOT met"))


if __name__ == "__main__":
    main()
