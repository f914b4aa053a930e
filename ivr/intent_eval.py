"""Precision and recall of the intent classifier on the labelled corpus of tests/intents/.

The corpus holds two sets, split once and fixed in the repository: `tune`, which the rules
of flows/intents.yaml are changed against, and `test`, held out, whose figures are the ones
that count (bench/RESULTS.md, `ivr check`, tests/intents/test_intent.py). A rule tuned while
looking at test utterances would make the test set one more tuning set and its figures a
flattering guess, so the two are always scored and reported apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from ivr.config import ROOT
from ivr.intent_schema import LABELS

CORPUS = ROOT / "tests" / "intents" / "corpus.yaml"
SETS = ("tune", "test")

# What the held-out test set must show: manager precision and recall at 0.95,
# and money / technical / anger no worse than the lexicon of 2026-12-03 scored on the same
# test set before any rule was tuned for it (measured once; bench/RESULTS.md).
TARGETS: dict[str, tuple[float, float]] = {  # label -> (precision, recall)
    "manager": (0.95, 0.95),
    "money": (1.0, 0.833),
    "technical": (1.0, 0.756),
    "anger": (0.947, 0.720),
}


class Classifier(Protocol):
    def classify(self, text: str, digits: str = "") -> Any: ...


@dataclass(frozen=True)
class Score:
    """One label's counts over one set; precision and recall are 1.0 when undefined."""

    label: str
    support: int
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass(frozen=True)
class Result:
    """The scores of one set, and one line per utterance labelled wrongly."""

    name: str
    total: int
    scores: tuple[Score, ...]
    misses: tuple[str, ...]

    def by_label(self) -> dict[str, Score]:
        return {s.label: s for s in self.scores}

    def below_target(self) -> list[str]:
        """The targets this set misses, as "manager recall 0.93 < 0.95"."""
        low = []
        for s in self.scores:
            precision, recall = TARGETS[s.label]
            if s.precision < precision - 1e-9:
                low.append(f"{s.label} precision {s.precision:.3f} < {precision}")
            if s.recall < recall - 1e-9:
                low.append(f"{s.label} recall {s.recall:.3f} < {recall}")
        return low

    def table(self, *, misses: bool = True) -> str:
        rows = [f"{'label':<10} {'support':>7} {'tp':>4} {'fp':>4} {'fn':>4} "
                f"{'precision':>9} {'recall':>7}"]
        rows += [f"{s.label:<10} {s.support:>7} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
                 f"{s.precision:>9.3f} {s.recall:>7.3f}" for s in self.scores]
        rows.append(f"{self.total - len(self.misses)}/{self.total} utterances of the "
                    f"{self.name} set labelled exactly right")
        if misses and self.misses:
            rows.append("labelled wrongly:")
            rows += self.misses
        return "\n".join(rows)

    def summary(self) -> str:
        """One line: "manager P 0.988 R 0.976, money P 1.000 R 0.842, ..."."""
        return ", ".join(f"{s.label} P {s.precision:.3f} R {s.recall:.3f}"
                         for s in self.scores)


def load_corpus(path: Path = CORPUS) -> dict[str, list[dict[str, Any]]]:
    """{"tune": [entries], "test": [entries]}, each entry {text, labels, why?}."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {name: [e for section in data[name].values() for e in section] for name in SETS}


def score(classifier: Classifier, entries: Iterable[dict[str, Any]], name: str) -> Result:
    """Per-label counts of `classifier` over `entries`."""
    counts = {label: [0, 0, 0, 0] for label in LABELS}  # support, tp, fp, fn
    misses = []
    total = 0
    for entry in entries:
        total += 1
        want = frozenset(entry["labels"])
        got = classifier.classify(entry["text"])
        for label in LABELS:
            c = counts[label]
            c[0] += label in want
            c[1] += label in want and label in got.labels
            c[2] += label not in want and label in got.labels
            c[3] += label in want and label not in got.labels
        if got.labels != want:
            misses.append(f"  {entry['text']!r}: want {sorted(want)}, got "
                          f"{sorted(got.labels)} {list(got.matched)}")
    return Result(name, total, tuple(Score(label, *counts[label]) for label in LABELS),
                  tuple(misses))
