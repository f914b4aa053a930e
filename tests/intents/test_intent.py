"""The intent lexicon: precision and recall on the labelled corpus, the tricky cases, the
Twilio hints, and a broken flows/intents.yaml stopping the start with file, line and key."""

from __future__ import annotations

import shutil
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from ivr.config import IVR_FLOWS_DIR
from ivr.flows import FlowError
from ivr.intent import (
    LABELS,
    MAX_HINT_CHARS,
    MAX_HINTS,
    NO_INTENT,
    Intent,
    Lexicon,
    load_lexicon,
    normalise,
)

SHIPPED = Path(IVR_FLOWS_DIR) / "intents.yaml"
CORPUS = Path(__file__).with_name("corpus.yaml")
# section of corpus.yaml -> the fewest entries it must hold
SECTIONS = {"manager": 40, "not_manager": 30, "money": 20, "technical": 20, "anger": 15,
            "neither": 30, "unseen": 0}
MIN_PRECISION = {"manager": 0.97}
MIN_SCORE = 0.95


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon(SHIPPED)


def load_corpus() -> dict[str, list[dict[str, Any]]]:
    return yaml.safe_load(CORPUS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def all_entries() -> list[dict[str, Any]]:
    return [entry for entries in load_corpus().values() for entry in entries]


# --- the corpus itself ------------------------------------------------------------------


def test_the_corpus_is_big_enough_and_well_formed():
    corpus = load_corpus()
    assert set(corpus) == set(SECTIONS)
    for section, least in SECTIONS.items():
        assert len(corpus[section]) >= least, section
    entries = all_entries()
    assert len(entries) >= 170
    for entry in entries:
        assert set(entry) <= {"text", "labels", "why"}, entry
        assert isinstance(entry["text"], str), entry
        assert set(entry["labels"]) <= set(LABELS), f"unknown label in {entry}"
    texts = [entry["text"] for entry in entries]
    assert len(texts) == len(set(texts)), "an utterance is in the corpus twice"

    def count(label: str) -> int:
        return sum(label in entry["labels"] for entry in entries)

    assert count("manager") >= 40
    assert count("money") >= 20
    assert count("technical") >= 20
    assert count("anger") >= 15
    assert sum(not entry["labels"] for entry in entries) >= 30
    assert sum("manager" not in e["labels"] for e in corpus["not_manager"]) >= 30


# --- precision and recall ---------------------------------------------------------------


class Classifier(Protocol):
    def classify(self, text: str, digits: str = "") -> Intent: ...


@dataclass(frozen=True)
class Score:
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


def score(lexicon: Classifier) -> tuple[list[Score], list[str]]:
    """Per-label scores over the corpus, and one line per utterance labelled wrongly."""
    counts = {label: [0, 0, 0, 0] for label in LABELS}  # support, tp, fp, fn
    misses = []
    for entry in all_entries():
        want = frozenset(entry["labels"])
        got = lexicon.classify(entry["text"])
        for label in LABELS:
            c = counts[label]
            c[0] += label in want
            c[1] += label in want and label in got.labels
            c[2] += label not in want and label in got.labels
            c[3] += label in want and label not in got.labels
        if got.labels != want:
            misses.append(f"  {entry['text']!r}: want {sorted(want)}, got "
                          f"{sorted(got.labels)} {list(got.matched)}")
    return [Score(label, *counts[label]) for label in LABELS], misses


def report(scores: list[Score], misses: list[str]) -> str:
    rows = [f"{'label':<10} {'support':>7} {'tp':>4} {'fp':>4} {'fn':>4} "
            f"{'precision':>9} {'recall':>7}"]
    rows += [f"{s.label:<10} {s.support:>7} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
             f"{s.precision:>9.3f} {s.recall:>7.3f}" for s in scores]
    total = len(all_entries())
    rows.append(f"{total - len(misses)}/{total} utterances labelled exactly right")
    if misses:
        rows.append("labelled wrongly:")
        rows += misses
    return "\n".join(rows)


def test_precision_and_recall_on_the_corpus(lexicon):
    scores, misses = score(lexicon)
    table = report(scores, misses)
    print("\n" + table)

    low = [f"{s.label} precision {s.precision:.3f} < {MIN_PRECISION.get(s.label, MIN_SCORE)}"
           for s in scores if s.precision < MIN_PRECISION.get(s.label, MIN_SCORE)]
    low += [f"{s.label} recall {s.recall:.3f} < {MIN_SCORE}"
            for s in scores if s.recall < MIN_SCORE]
    assert not low, "; ".join(low) + "\n" + table


class Shouting:
    """A classifier that labels everything with everything."""

    def classify(self, text: str, digits: str = "") -> Intent:
        return Intent(labels=frozenset(LABELS))


class Deaf:
    """A classifier that hears nothing."""

    def classify(self, text: str, digits: str = "") -> Intent:
        return NO_INTENT


def test_the_scores_can_fail():
    """The thresholds above are not vacuous: labelling nothing, or everything, fails them."""
    deaf, _ = score(Deaf())
    assert all(s.recall == 0.0 for s in deaf)
    shouting, misses = score(Shouting())
    assert all(s.recall == 1.0 and s.precision < MIN_SCORE for s in shouting)
    assert len(misses) == len(all_entries()) - sum(
        set(e["labels"]) == set(LABELS) for e in all_entries())


# --- tricky cases, one by one -----------------------------------------------------------

M, MONEY, TECH, ANGER = "manager", "money", "technical", "anger"
TRICKY = {
    # every spelling of a manager request
    "kanji": ("責任者を出してください", {M}),
    "kana-only": ("せきにんしゃをだしてください", {M}),
    "katakana-only": ("セキニンシャヲダシテ", {M}),
    "half-width katakana": ("ｾｷﾆﾝｼｬｦﾀﾞｼﾃ", {M}),
    "spaces and punctuation": ("責任者 を 、出して 。", {M}),
    "上の人": ("上の人に代わって", {M}),
    "うえのひと": ("うえのひとにかわって", {M}),
    "上長": ("上長をお願いします", {M}),
    "じょうちょう": ("じょうちょうに代わってもらえますか", {M}),
    "偉い人": ("偉い人を呼んでください", {M}),
    "えらい人": ("えらい人いないの", {M}),
    "えらいひと": ("えらいひと", {M}),
    "スーパーバイザー": ("スーパーバイザーに代わってください", {M}),
    "half-width スーパーバイザー": ("ｽｰﾊﾟｰﾊﾞｲｻﾞｰ", {M}),
    "マネージャー": ("マネージャーを呼んで", {M}),
    "マネジャー": ("マネジャーと話したい", {M}),
    "担当者の上司": ("担当者の上司に代わってください", {M}),
    "manager please": ("manager please", {M}),
    "Manager, please.": ("Manager, please.", {M}),
    "let me speak to a supervisor": ("let me speak to a supervisor", {M}),
    "someone in charge": ("can i talk to someone in charge", {M}),
    "your boss": ("i want to speak to your boss", {M}),
    "escalate": ("please escalate this", {M}),
    "a new request after a decline": ("i dont want to talk to you i want a manager", {M}),
    # rough or combined
    "rough demand": ("責任者を出せ", {M, ANGER}),
    "manager and refund": ("責任者を出せ、返金しろ", {M, MONEY, ANGER}),
    # declined
    "マネージャーは結構です": ("マネージャーは結構です", set()),
    "責任者は出さなくていい": ("責任者は出さなくていい", set()),
    "責任者じゃなくていいです": ("責任者じゃなくていいです", set()),
    "上の人は呼ばなくていい": ("上の人は呼ばなくていい", set()),
    "kana decline": ("せきにんしゃはけっこうです", set()),
    "I don't want a supervisor": ("I don't want a supervisor", set()),
    "no need for a manager": ("no need for a manager", set()),
    "a decline then money": ("責任者は結構です、返金だけしてください", {MONEY}),
    # other meanings
    "パスワードマネージャー": ("パスワードマネージャー", {TECH}),
    "プロジェクトマネージャーの設定": ("プロジェクトマネージャーの設定", {TECH}),
    "account manager app": ("account manager app", set()),
    "supervisor mode": ("how do i turn off supervisor mode", {TECH}),
    "my own boss": ("my boss told me to call", set()),
    "うちの上司": ("うちの上司に確認します", set()),
    "the caller is the manager": ("私が店舗の責任者なんですが", set()),
    "上の方 as a place": ("画面の上の方にあるボタン", {TECH}),
    "上の階の人 is a neighbour": ("上の階の人もつながらない", {TECH}),
    # whole words in English, and not money in 折り返し
    "sue is not in issue": ("there is an issue in my area", set()),
    "bill the name": ("my name is bill", set()),
    "折り返し": ("折り返し電話をください", set()),
    "reaching this line is not technical": ("何回電話してもつながらない", {ANGER}),
    "silence": ("", set()),
}


@pytest.mark.parametrize("text, labels", TRICKY.values(), ids=TRICKY.keys())
def test_tricky_cases(lexicon, text, labels):
    assert lexicon.classify(text).labels == labels


def test_digits_never_make_a_label(lexicon):
    for digits in ("0", "1", "2", "9", "#", "*", "11"):
        assert lexicon.classify("", digits) == NO_INTENT
    assert lexicon.classify("いつ復旧しますか", "1").labels == frozenset()
    assert lexicon.classify("責任者を出して", "2").labels == {"manager"}


def test_matched_names_the_phrases_that_fired(lexicon):
    intent = lexicon.classify("責任者を出せ、返金しろ")
    assert intent.matched == ("責任者", "返金", "出せ")
    assert lexicon.classify("マネジャーと話したい").matched == ("マネージャ",)
    assert lexicon.classify("this is ridiculous").matched == ("ridiculous",)
    assert lexicon.classify("マネージャーは結構です").matched == ()


# --- the reasons ------------------------------------------------------------------------

REASONS = {
    # labels: (reason, ladder_reason)
    "manager and money": ({M, MONEY, ANGER}, M, MONEY),
    "manager and technical": ({M, TECH}, M, TECH),
    "money and technical": ({MONEY, TECH}, MONEY, MONEY),
    "manager and anger": ({M, ANGER}, M, M),
    "manager": ({M}, M, M),
    "technical and anger": ({TECH, ANGER}, TECH, TECH),
    "anger": ({ANGER}, ANGER, ANGER),
    "nothing": (set(), None, None),
}


@pytest.mark.parametrize("labels, reason, ladder", REASONS.values(), ids=REASONS.keys())
def test_reason_and_ladder_reason(labels, reason, ladder):
    intent = Intent(labels=frozenset(labels))
    assert intent.reason == reason
    assert intent.ladder_reason() == ladder
    assert intent.wants_manager is (M in labels)


def test_the_example_from_the_brief(lexicon):
    intent = lexicon.classify("責任者を出せ、返金しろ")
    assert intent.wants_manager
    assert intent.reason == "manager"
    assert intent.ladder_reason() == "money"


def test_an_intent_is_frozen():
    with pytest.raises(FrozenInstanceError):
        NO_INTENT.labels = frozenset({"manager"})  # type: ignore[misc]
    assert NO_INTENT.reason is None and not NO_INTENT.wants_manager


# --- normalisation ----------------------------------------------------------------------

FOLDS = {
    "spaces and 、。": ("責任者 を 、出して 。", "責任者を出して"),
    "half-width katakana": ("ｾｷﾆﾝｼｬ", "せきにんしゃ"),
    "katakana": ("スーパーバイザー", "すーぱーばいざー"),
    "full-width Latin": ("Ｗｉ－Ｆｉ　ＤＮＳ", "wi fi dns"),
    "apostrophes and case": ("I Don't want a Supervisor.", "i dont want a supervisor"),
    "curly apostrophe": ("I can\u2019t connect!", "i cant connect"),
    "Latin next to Japanese": ("DNS の 設定", "dnsの設定"),
}


@pytest.mark.parametrize("text, folded", FOLDS.values(), ids=FOLDS.keys())
def test_normalise(text, folded):
    assert normalise(text) == folded


# --- Twilio hints -----------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_hints_fit_twilio(lexicon, lang):
    hints = lexicon.hints(lang)
    assert 0 < len(hints) <= MAX_HINTS
    assert all(0 < len(hint) <= MAX_HINT_CHARS for hint in hints)
    assert len(hints) == len(set(hints))
    assert not [hint for hint in hints if "," in hint or hint != hint.strip()]


def test_hints_hold_both_languages(lexicon):
    ja, en = lexicon.hints("ja"), lexicon.hints("en")
    assert "責任者" in ja and "責任者を出して" in ja and "上の人" in ja
    assert "manager" in en and "manager please" in en and "supervisor" in en
    assert not set(ja) & {"manager please", "let me speak to a supervisor"}
    assert lexicon.hints("ja-JP") == ja and lexicon.hints("en-US") == en
    with pytest.raises(ValueError, match="fr"):
        lexicon.hints("fr")


def test_hints_stop_at_500_keeping_the_explicit_ones_first(tmp_path):
    text = SHIPPED.read_text(encoding="utf-8")
    first = "        - (責任者|せきにんしゃ)\n"
    extra = "".join(f"        - 追加語{i:03d}\n" for i in range(600))
    path = tmp_path / "intents.yaml"
    path.write_text(text.replace(first, first + extra), encoding="utf-8")

    ja = load_lexicon(path).hints("ja")

    assert len(ja) == MAX_HINTS
    assert ja[:3] == ["責任者を出して", "責任者に代わって", "上の人に代わって"]
    assert "追加語000" in ja and "追加語599" not in ja


def test_hints_are_a_copy(lexicon):
    lexicon.hints("ja").clear()
    assert lexicon.hints("ja")


# --- a broken flows/intents.yaml --------------------------------------------------------


def broken_copy(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    """A copy of the shipped file with one edit, and the edited text."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in intents.yaml exactly once"
    path = tmp_path / "intents.yaml"
    edited = text.replace(old, new)
    path.write_text(edited, encoding="utf-8")
    return path, edited


def line_number(text: str, line: str) -> int:
    """1-based number of the line that reads exactly `line`."""
    lines = text.splitlines()
    assert lines.count(line) == 1, f"{line!r} is not in the edited text exactly once"
    return lines.index(line) + 1


# (old text, new text, the line the error must point at, dotted key, Fix: hint)
BROKEN = {
    "unknown key": ("    negatable: true\n", "    negatable: true\n    colour: blue\n",
                    "    colour: blue", "labels.manager.colour", "negatable, phrases"),
    "wrong type": ("    max_words: 5\n", "    max_words: five\n", "    max_words: five",
                   "negation.before.max_words", "a whole number from 0 to 10"),
    "required key missing": ("    max_words: 5\n", "", "  before:",
                             "negation.before.max_words", "a whole number from 0 to 10"),
    "negatable not a boolean": ("    negatable: true\n", "    negatable: sometimes\n",
                                "    negatable: sometimes", "labels.manager.negatable",
                                "true or false"),
    "unbalanced group": ("        - (上長|じょうちょう)\n", "        - (上長|じょうちょう\n",
                         "        - (上長|じょうちょう", "labels.manager.phrases.ja.2",
                         "(a|b) gives alternative spellings"),
    "comma in a phrase": ("        - (上長|じょうちょう)\n", "        - 上長, 部長\n",
                          "        - 上長, 部長", "labels.manager.phrases.ja.2",
                          "without commas"),
    "phrase too short": ("        - (上長|じょうちょう)\n", "        - (上長|上)\n",
                         "        - (上長|上)", "labels.manager.phrases.ja.2",
                         "at least 2 letters"),
    "unknown label": ("  money:\n", "  billing:\n    negatable: false\n  money:\n",
                      "  billing:", "labels.billing", "manager, money, technical, anger"),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_lexicon_names_file_line_key_and_fix(tmp_path, case):
    old, new, at, key, fix = case
    path, edited = broken_copy(tmp_path, old, new)

    with pytest.raises(FlowError) as raised:
        load_lexicon(path)

    message = str(raised.value)
    assert f"{path}:{line_number(edited, at)}: {key}: " in message
    assert fix in message.split("Fix: ", 1)[1]


def test_the_copy_itself_loads(tmp_path):
    """Each failure above comes from its one edit, not from copying."""
    copy = tmp_path / "intents.yaml"
    shutil.copy(SHIPPED, copy)
    assert load_lexicon(copy).classify("責任者を出して").wants_manager


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FlowError, match="intents.yaml: cannot read"):
        load_lexicon(tmp_path / "intents.yaml")
