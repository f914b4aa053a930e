"""Measure how many utterances per second Lexicon.classify labels on one core.

Run from the repository root: python bench/intent_bench.py [--rounds 7] [--repeat 50]

The labelled corpus of tests/intents/ is classified `repeat` times per round; the best
round counts (the others lost time to the rest of the machine), and the median is shown
beside it. Loading and compiling flows/intents.yaml is timed once, separately: the service
does it at start, never per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.intent import load_lexicon  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--repeat", type=int, default=50,
                        help="passes over the corpus per round (default 50)")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):  # one core, as a gunicorn worker has
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    start = time.perf_counter()
    lexicon = load_lexicon(ROOT / "flows" / "intents.yaml")
    load_ms = (time.perf_counter() - start) * 1000

    corpus = yaml.safe_load((ROOT / "tests" / "intents" / "corpus.yaml")
                            .read_text(encoding="utf-8"))
    texts = [entry["text"] for section in corpus.values() for entry in section]
    batch = texts * args.repeat
    classify = lexicon.classify
    for text in texts:  # warm up
        classify(text)

    rates = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for text in batch:
            classify(text)
        rates.append(len(batch) / (time.perf_counter() - start))

    best, median = max(rates), statistics.median(rates)
    print(f"lexicon load + compile: {load_ms:.0f} ms (once, at start)")
    print(f"corpus: {len(texts)} utterances x {args.repeat} per round, {args.rounds} rounds, "
          "one core")
    print(f"best round:   {best:,.0f} utterances/s  {1e6 / best:.1f} µs/utterance")
    print(f"median round: {median:,.0f} utterances/s  {1e6 / median:.1f} µs/utterance")


if __name__ == "__main__":
    main()
