"""Would a Japanese morphological analyser help the intent classifier? Measure one.

Run with a Python that has the analyser installed (it is not a dependency of the service):
    python bench/analyser_bench.py sudachi     # SudachiPy + sudachidict_core
    python bench/analyser_bench.py fugashi     # fugashi + unidic-lite

For the Japanese utterances of the tune set (never the test set) it prints:
  - load: import and dictionary load, once per web worker;
  - per utterance: p50/p99 of tokenizing one utterance on one core;
  - install size: the packages' folders in site-packages;
  - structure found: of the manager requests, how many come out as a role lemma (責任者,
    上司, 店長 ...) and a request lemma (代わる, 出す, 呼ぶ ...) — the most an analyser-based
    rule could catch — split into utterances with kanji and kana-only ones (ASR often
    writes kana).
docs/decisions.md ("Intent classifier: no morphological analyser") keeps the figures.
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"責任者", "上司", "上長", "上席", "店長", "部長", "課長", "社長", "リーダー", "管理者",
         "マネージャー", "マネジャー", "スーパーバイザー", "権限", "決定権", "偉い", "役職者",
         "役職", "主任", "所長", "室長", "係長", "支店長", "センター長", "監督者", "管理職",
         "上", "トップ", "決裁権", "責任", "立場", "SV", "sv"}
REQUESTS = {"代わる", "替わる", "変わる", "換わる", "繋ぐ", "つなぐ", "呼ぶ", "出す", "願う",
            "お願い", "話す", "話", "居る", "いる", "いらっしゃる", "取り次ぐ", "出る", "来る",
            "連絡", "説明", "判断", "決める", "繋げる"}
KANA_ONLY = re.compile(r"^[\u3040-\u30ff\uff66-\uff9f\s、。？！ー]+$")


def tokenizer(name: str) -> Callable[[str], list[str]]:
    """A function from text to the lemmas of its tokens."""
    if name == "sudachi":
        from sudachipy import Dictionary, SplitMode

        tok = Dictionary(dict="core").create()  # .tokenizer() in newer SudachiPy
        mode = SplitMode.C
        return lambda text: [m.dictionary_form() for m in tok.tokenize(text, mode)]
    if name == "fugashi":
        import fugashi

        tagger = fugashi.Tagger()
        return lambda text: [w.feature.lemma or w.surface for w in tagger(text)]
    raise SystemExit(f"unknown analyser {name!r}: sudachi or fugashi")


def package_size(*modules: str) -> float:
    """MB on disk of the given top-level packages."""
    total = 0
    for module in modules:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent
        total += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return total / 1e6


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "sudachi"
    corpus = yaml.safe_load((ROOT / "tests/intents/corpus.yaml").read_text(encoding="utf-8"))
    entries = [e for section in corpus["tune"].values() for e in section
               if re.search(r"[^\x00-\x7f]", e["text"])]

    start = time.perf_counter()
    lemmas = tokenizer(name)
    lemmas("責任者に代わってください")
    load_ms = (time.perf_counter() - start) * 1000

    times = []
    for _ in range(5):
        for entry in entries:
            t0 = time.perf_counter()
            lemmas(entry["text"])
            times.append(time.perf_counter() - t0)
    times.sort()
    p50 = statistics.median(times) * 1e6
    p99 = times[int(len(times) * 0.99)] * 1e6

    found = {"kanji": [0, 0], "kana": [0, 0]}
    for entry in entries:
        if "manager" not in entry["labels"]:
            continue
        got = set(lemmas(entry["text"]))
        kind = "kana" if KANA_ONLY.match(entry["text"]) else "kanji"
        found[kind][1] += 1
        found[kind][0] += bool(got & ROLES) and bool(got & REQUESTS)

    size = package_size(*(("sudachipy", "sudachidict_core") if name == "sudachi"
                          else ("fugashi", "unidic_lite")))
    print(f"analyser: {name}")
    print(f"load (import + dictionary): {load_ms:.0f} ms")
    print(f"per utterance ({len(entries)} ja tune utterances x 5): p50 {p50:.0f} µs, "
          f"p99 {p99:.0f} µs")
    print(f"install size: {size:.0f} MB")
    for kind, (hit, total) in found.items():
        print(f"manager requests with a role and a request lemma ({kind}): {hit}/{total}")


if __name__ == "__main__":
    main()
