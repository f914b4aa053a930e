"""The intent lexicon: precision and recall on the labelled corpus, the tricky cases, the
Twilio hints, and a broken flows/intents.yaml stopping the start with file, line and key."""

from __future__ import annotations

import re
import shutil
from dataclasses import FrozenInstanceError
from pathlib import Path

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
from ivr.intent_eval import CORPUS, SETS, load_corpus, score

SHIPPED = Path(IVR_FLOWS_DIR) / "intents.yaml"
# section of each set of corpus.yaml -> the fewest entries it must hold
SECTIONS = {"manager": 40, "not_manager": 30, "money": 15, "technical": 15, "anger": 15,
            "neither": 20}
# The tune set is what the rules were changed against: it must stay near perfect.
TUNE_FLOOR = 0.95


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon(SHIPPED)


def is_japanese(text: str) -> bool:
    return bool(re.search(r"[^\x00-\x7f]", text))


# --- the corpus itself ------------------------------------------------------------------


def test_the_corpus_is_big_enough_and_well_formed():
    raw = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    assert set(raw) == set(SETS)
    for name in SETS:
        assert set(SECTIONS) <= set(raw[name]), name
        for section, least in SECTIONS.items():
            assert len(raw[name][section]) >= least, (name, section)
    corpus = load_corpus()
    entries = [e for name in SETS for e in corpus[name]]
    assert len(entries) >= 600
    assert sum(is_japanese(e["text"]) for e in entries) >= 400
    assert sum(not is_japanese(e["text"]) for e in entries) >= 200
    for entry in entries:
        assert set(entry) <= {"text", "labels", "why"}, entry
        assert isinstance(entry["text"], str), entry
        assert set(entry["labels"]) <= set(LABELS), f"unknown label in {entry}"
    texts = [entry["text"] for entry in entries]
    assert len(texts) == len(set(texts)), "an utterance is in the corpus twice"
    test = corpus["test"]
    assert sum("manager" in e["labels"] for e in test) >= 60
    assert sum("manager" not in e["labels"] for e in test) >= 100
    for label in ("money", "technical", "anger"):
        assert sum(label in e["labels"] for e in test) >= 15, label


# --- precision and recall ---------------------------------------------------------------


def test_the_test_set_meets_the_targets(lexicon):
    """The held-out set: manager precision and recall at 0.95, the other labels no worse
    than the lexicon before the structure rule scored on the same set."""
    result = score(lexicon, load_corpus()["test"], "test")
    print("\n" + result.table(misses=False))
    assert not result.below_target(), "; ".join(result.below_target())


def test_the_tune_set_stays_near_perfect(lexicon):
    result = score(lexicon, load_corpus()["tune"], "tune")
    table = result.table()
    print("\n" + table)
    low = [f"{s.label} {kind} {value:.3f} < {TUNE_FLOOR}" for s in result.scores
           for kind, value in (("precision", s.precision), ("recall", s.recall))
           if value < TUNE_FLOOR]
    assert not low, "; ".join(low) + "\n" + table


class Shouting:
    """A classifier that labels everything with everything."""

    def classify(self, text: str, digits: str = "") -> Intent:
        return Intent(labels=frozenset(LABELS))


class Deaf:
    """A classifier that hears nothing."""

    def classify(self, text: str, digits: str = "") -> Intent:
        return NO_INTENT


class Yesterday:
    """The lexicon as it was before the structure rule: it misses a third of the test
    set's manager requests, which the targets must catch."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon

    def classify(self, text: str, digits: str = "") -> Intent:
        intent = self.lexicon.classify(text)
        if "manager" in intent.labels and not re.search(
                "責任者|上の人|上長|上司|マネ|スーパーバイザ|manager|supervisor", text.lower()):
            return Intent(labels=intent.labels - {"manager"})
        return intent


def test_the_targets_can_fail(lexicon):
    """Labelling nothing, everything, or only the role words listed before fails them."""
    test = load_corpus()["test"]
    deaf = score(Deaf(), test, "test")
    assert all(s.recall == 0.0 for s in deaf.scores) and deaf.below_target()
    shouting = score(Shouting(), test, "test")
    assert all(s.recall == 1.0 for s in shouting.scores)
    assert {line.split()[0] for line in shouting.below_target()} == set(LABELS)
    assert len(shouting.misses) == len(test)
    assert "manager recall" in " ".join(score(Yesterday(lexicon), test, "test").below_target())


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
    # the examples: role words never listed before, authority, polite wrappers
    "権限のある方": ("もっと権限のある方はいらっしゃいませんか", {M}),
    "店長さん": ("店長さんに代わってもらえる？", {M}),
    "上席": ("上席の方にお繋ぎいただけますでしょうか", {M}),
    "リーダー": ("リーダーの方に代わってもらえますか", {M}),
    "管理者の方": ("管理者の方をお願いします", {M}),
    "決定権": ("決定権のある人と話したい", {M}),
    "話のわかる人": ("話のわかる人に代わって", {M}),
    "上の立場の方": ("上の立場の方とお話しできますか", {M}),
    "inverted order": ("代わってください、責任者に", {M}),
    "a filler and ASR spacing": ("えーと あの 上席の 方に かわって もらえ ますか", {M}),
    "someone with more authority": ("could someone with more authority take this call", {M}),
    "put … on": ("put your manager on the phone", {M}),
    "connect me": ("connect me to a supervisor please", {M}),
    # what is not ours
    "the caller's own boss": ("上司には私から報告しておきます", set()),
    "the caller's own 店長": ("うちの店長がそちらに電話しろって言うので", set()),
    "a statement about someone": ("さっき責任者の方と話しました", set()),
    "someone else talked": ("主人が責任者と話したと言っていました", set()),
    "a product name": ("接続マネージャーが起動しない", {TECH}),
    "a card reader": ("カードリーダーが反応しません", {TECH}),
    "a system message": ("管理者に連絡してくださいというエラーが出る", {TECH}),
    "declined after the request": ("上の方に代わってもらわなくても大丈夫です", set()),
    "declined with わけじゃない": ("別に偉い人と話したいわけじゃないんです", set()),
    "don't transfer me": ("please dont transfer me to a supervisor", set()),
    "my manager talked": ("i will talk to my manager and call back", set()),
    "another operator": ("別の担当の方に代わってもらえますか", set()),
    "a person, not a manager": ("can i talk to a person", set()),
}


@pytest.mark.parametrize("text, labels", TRICKY.values(), ids=TRICKY.keys())
def test_tricky_cases(lexicon, text, labels):
    assert lexicon.classify(text).labels == labels


def test_a_role_and_a_request_must_be_close(lexicon):
    """The structure rule's window (12 characters in Japanese, 24 in English) and `alone`:
    a role with nothing else said is a request, a role far from any request is not."""
    assert lexicon.classify("上席の方に" + "あ" * 7 + "代わって").wants_manager
    assert not lexicon.classify("上席の方に" + "あ" * 13 + "代わって").wants_manager
    assert lexicon.classify("speak to" + " x" * 8 + " supervisor").wants_manager
    assert not lexicon.classify("speak to" + " x" * 12 + " supervisor").wants_manager
    assert lexicon.classify("上席").wants_manager
    assert lexicon.classify("上席さん").wants_manager
    assert not lexicon.classify("上席の話ですけど").wants_manager


def test_digits_never_make_a_label(lexicon):
    for digits in ("0", "1", "2", "9", "#", "*", "11"):
        assert lexicon.classify("", digits) == NO_INTENT
    assert lexicon.classify("いつ復旧しますか", "1").labels == frozenset()
    assert lexicon.classify("責任者を出して", "2").labels == {"manager"}


def test_matched_names_the_phrases_that_fired(lexicon):
    intent = lexicon.classify("責任者を出せ、返金しろ")
    assert intent.matched == ("責任者", "出せ", "返金")
    assert lexicon.classify("マネジャーと話したい").matched == ("マネージャ", "話したい")
    assert lexicon.classify("supervisor").matched == ("supervisor",)
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
    first = "          - (責任者|せきにんしゃ)\n"
    extra = "".join(f"          - 追加語{i:03d}\n" for i in range(600))
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
    "unbalanced group": ("        - エスカレーション\n", "        - (エスカレーション\n",
                         "        - (エスカレーション", "labels.manager.phrases.ja.1",
                         "(a|b) gives alternative spellings"),
    "comma in a phrase": ("          - (上長|じょうちょう)\n", "          - 上長, 部長\n",
                          "          - 上長, 部長", "labels.manager.structure.roles.ja.4",
                          "without commas"),
    "role too short": ("          - (上長|じょうちょう)\n", "          - (上長|上)\n",
                       "          - (上長|上)", "labels.manager.structure.roles.ja.4",
                       "at least 2 letters"),
    "request too short": ("          - いらっしゃ\n", "          - (いらっしゃ|い)\n",
                          "          - (いらっしゃ|い)",
                          "labels.manager.structure.requests.ja.10", "at least 2 letters"),
    "window not a number": ("      window: {ja: 12, en: 24}\n", "      window: {ja: 12, en: far}\n",
                            "      window: {ja: 12, en: far}",
                            "labels.manager.structure.window.en", "a whole number from 0 to 60"),
    "structure without requests": ("      requests:\n", "      asks:\n", "    structure:",
                                   "labels.manager.structure.requests",
                                   "asking for a transfer"),
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
