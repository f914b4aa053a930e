"""Sort what a caller said at the gather step into intent labels, from flows/intents.yaml.

The lexicon (phrases, roles and requests, exclusions, negation cues) lives in
flows/intents.yaml; this module is only the engine. It is loaded and compiled once at start;
`Lexicon.classify` then costs about 15 µs (p99 ~35 µs, bench/intent_bench.py): one
NFKC/width/kana fold of the text, and one pass of one precompiled regex (every spelling of
every label, role, request and exclusion merged into a character trie, so the regex never
tries alternatives one by one). A label matches by a phrase, or by its structure rule: a
role near a request (上席 + に + 代わって), which generalises where listing sentences cannot.
Negation is looked at only when something matched.

The voice path calls, per /voice/gather webhook:
    intent = lexicon.classify(form["SpeechResult"], form["Digits"])
    intent.labels, intent.matched, intent.wants_manager, intent.reason, intent.ladder_reason()
and, when it builds the <Gather>: hints=", ".join(lexicon.hints(lang)).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ivr.flows import FlowError, _line_of, load_file
from ivr.intent_schema import LABELS, MAX_HINT_CHARS, SCHEMA
from ivr.lang import LANGS

# What the caller asked for, most specific request first: the call record and the whisper.
REASON_ORDER = ("manager", "money", "technical", "anger")
# Which SV ladder of escalation.yaml to call: the specialist first (see Intent.ladder_reason).
LADDER_ORDER = ("money", "technical", "manager", "anger")
MAX_HINTS = 500  # Twilio <Gather hints>: at most 500 entries ...
MAX_SPELLINGS = 2000  # spellings one phrase may expand to; more is a typo, not a phrase
MIN_CHARS = 2  # a shorter label phrase (上, 金) would fire inside unrelated words

# ---------------------------------------------------------------------------------------
# Normalisation: the caller's text and every phrase of the lexicon go through the same fold.

_FOLD = str.maketrans(
    {**{chr(c): chr(c - 0x60) for c in range(0x30A1, 0x30F7)},  # katakana -> hiragana
     "ヽ": "ゝ", "ヾ": "ゞ", "〜": "ー", "~": "ー",
     "'": None, "\u2019": None, "\u2018": None, "`": None})  # don't -> dont
_SEPARATORS = re.compile(r"[\W_]+")  # spaces, 、。!? and other punctuation (ー is a letter)
_SPACE_BY_CJK = re.compile(r" (?=[^\x00-\x7f])|(?<=[^\x00-\x7f]) ")
_WORD = re.compile(r"[a-z0-9]")
_WORD_START = r"(?=[a-z0-9])(?<![a-z0-9])"
_NOT_WORD_AFTER = r"(?![a-z0-9])"
_LONG_VOWEL = "ー"


def normalise(text: str) -> str:
    """Fold `text` the way the lexicon is folded: NFKC, lower case, katakana to hiragana,
    apostrophes dropped, punctuation to spaces, and no spaces next to Japanese characters
    ("責任者 を 出して。" -> "責任者を出して", "I don't want a Supervisor." -> "i dont want a
    supervisor")."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_FOLD)
    return _SPACE_BY_CJK.sub("", _SEPARATORS.sub(" ", text)).strip()


# ---------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class Intent:
    """What the caller's words asked for.

    labels: a subset of manager, money, technical, anger.
    matched: the lexicon spellings that fired, as flows/intents.yaml writes them (責任者,
        うえのひと, refund), in label order; for the call record and the SV's whisper.
    """

    labels: frozenset[str] = frozenset()
    matched: tuple[str, ...] = ()

    @property
    def wants_manager(self) -> bool:
        """The caller asked for a manager, SV or someone in charge (and did not decline)."""
        return "manager" in self.labels

    @property
    def reason(self) -> str | None:
        """What the caller asked for, for the call record and the SV's whisper.

        manager > money > technical > anger: a caller who said "責任者を出せ、返金しろ" asked
        for a manager, and the record says so.
        """
        return next((label for label in REASON_ORDER if label in self.labels), None)

    def ladder_reason(self) -> str | None:
        """The escalation.yaml ladder to call: money > technical > manager > anger.

        The specialist wins over a plain manager request. A caller who demands a manager
        about a refund needs someone who can decide the refund: the money ladder calls a
        billing SV first and a general SV as its last step, so the caller is handed up once
        instead of reaching a general SV who must pass them on again (PRODUCT.md: choose
        the right senior; the customer is not passed around). Likewise a manager demand
        about a broken router goes to the technical lead first.
        """
        return next((label for label in LADDER_ORDER if label in self.labels), None)


NO_INTENT = Intent()

# ---------------------------------------------------------------------------------------
# Compiling the lexicon


def _parts(phrase: str) -> list[list[str]]:
    """Split "(a|b)c(d)?" into [["a", "b"], ["c"], ["d", ""]] (the schema checked the syntax)."""
    parts: list[list[str]] = []
    for group, optional, literal in re.findall(r"\(([^()]*)\)(\?)?|([^()]+)", phrase):
        if literal:
            parts.append([literal])
        else:
            parts.append(group.split("|") + ([""] if optional else []))
    return parts


def canonical(phrase: str) -> str:
    """The phrase as Twilio's speech hints get it: the first alternative of each group,
    optional parts left out ("(上|うえ)の(人|ひと)" -> "上の人")."""
    return "".join("" if "" in alts else alts[0] for alts in _parts(phrase)).strip()


def _long_vowel_variants(folded: str) -> set[str]:
    """Every spelling with or without each inner ー (マネージャ -> まねーじゃ, まねじゃ)."""
    inner = [i for i, ch in enumerate(folded[:-1]) if ch == _LONG_VOWEL]
    variants = set()
    for keep in itertools.product((True, False), repeat=len(inner)):
        dropped = {i for i, k in zip(inner, keep, strict=True) if not k}
        variants.add("".join(ch for i, ch in enumerate(folded) if i not in dropped))
    return variants


class _Source:
    """flows/intents.yaml, for the line numbers of problems the schema cannot see."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._node: yaml.Node | None = None

    def error(self, at: Sequence[Any], problem: str, fix: str) -> FlowError:
        if self._node is None:
            self._node = yaml.compose(self.path.read_text(encoding="utf-8"),
                                      Loader=yaml.SafeLoader)
        line = _line_of(self._node, list(at))
        key = ".".join(str(part) for part in at)
        return FlowError(f"{self.path}:{line}: {key}: {problem}. Fix: {fix}.")


def _spellings(phrase: str, at: Sequence[Any], source: _Source, *, min_chars: int = 1
               ) -> dict[str, str]:
    """Every folded spelling of one phrase, each with the written form it came from
    ("(上|うえ)の(人|ひと)" -> {"上の人": "上の人", "うえのひと": "うえのひと", ...})."""
    parts = _parts(phrase)
    count = 1
    for alts in parts:
        count *= len(alts)
    if count > MAX_SPELLINGS:
        raise source.error(at, f"{phrase!r} expands to {count} spellings",
                           f"split it into shorter phrases of at most {MAX_SPELLINGS}")
    spellings: dict[str, str] = {}
    for combo in itertools.product(*parts):
        written = " ".join("".join(combo).split())
        folded = normalise(written)
        if len(folded) < min_chars:
            raise source.error(at, f"{phrase!r} can match as {folded!r}, which is too short "
                                   "to tell apart from other words",
                               f"use at least {min_chars} letters in every spelling")
        for variant in _long_vowel_variants(folded):
            spellings.setdefault(variant, written)
    return spellings


def _trie(spellings: Iterable[str], *, tail: str = "") -> str:
    """One regex for many literal spellings, longest first, sharing prefixes.

    A spelling that starts or ends with a Latin letter or digit only matches as whole
    words (sue not in issue). `tail` follows a spelling that ends in anything else (ー*
    takes trailing long-vowel marks along with a phrase). The Latin and the Japanese
    spellings sit behind a one-character guard each, so inside an English word, or at a
    Latin letter, the regex does not walk the other script's branches.
    """
    root: dict[str, Any] = {}
    for spelling in spellings:
        node = root
        for ch in spelling:
            node = node.setdefault(ch, {})
        node[""] = {}
    latin = {ch: child for ch, child in root.items() if _WORD.match(ch)}
    other = {ch: child for ch, child in root.items() if not _WORD.match(ch)}
    branches = []
    if latin:
        branches.append(_WORD_START + _emit(latin, "", tail))
    if other:
        branches.append(_NOT_WORD_AFTER + _emit(other, "", tail))
    return "(?:" + "|".join(branches) + ")" if branches else r"(?!)"


def _emit(node: dict[str, Any], prev: str, tail: str) -> str:
    alts = [re.escape(ch) + _emit(node[ch], ch, tail) for ch in sorted(k for k in node if k)]
    if "" in node:
        alts.append(_NOT_WORD_AFTER if _WORD.match(prev) else tail)
    if len(alts) == 1:
        return alts[0]
    return "(?:" + "|".join(alts) + ")"


@dataclass(frozen=True)
class _Structure:
    """A label's structure rule: a role within `window` characters of a request, in
    either order, or a role that is (nearly) all the caller said."""

    window: dict[bool, int]  # Latin role? -> characters between role and request
    alone: int  # a role with at most this many other characters matches by itself


@dataclass(frozen=True)
class _Found:
    """One spelling of the lexicon: the label it is for, and as which part of it."""

    label: str
    part: str  # phrase, exclude, role or request (the last two: the label's structure)
    written: str  # as flows/intents.yaml writes it; the call record shows this
    length: int


class Lexicon:
    """The compiled flows/intents.yaml; build it with load_lexicon, once, at start.

    All spellings of all labels and exclusions sit in one trie regex that is run once over
    the text, as a lookahead so that it reports the longest spelling starting at every
    position, overlapping ones included. Each spelling knows the shorter spellings it
    begins with (パスワードマネージャ, a manager exclusion, begins with パスワード, a technical
    phrase), so one scan finds every phrase and every exclusion of every label.
    """

    def __init__(self, scanner: re.Pattern[str], found: dict[str, tuple[_Found, ...]],
                 negatable: frozenset[str], declined_after: re.Pattern[str],
                 declined_before: re.Pattern[str], hints: dict[str, list[str]],
                 structures: dict[str, _Structure] | None = None) -> None:
        self._scanner = scanner
        self._structures = structures or {}
        self._found = found
        self._negatable = negatable
        self._after = declined_after
        self._before = declined_before
        self._hints = hints

    def classify(self, text: str, digits: str = "") -> Intent:
        """Label one SpeechResult. `digits` never adds a label: keys are routed by the menu
        of flows/call.yaml, so a caller pressing 1 is not asking for a manager."""
        del digits
        folded = normalise(text)
        hits: list[tuple[_Found, int, int]] = []
        excluded: list[tuple[_Found, int, int]] = []
        parts: list[tuple[_Found, int, int]] = []
        for m in self._scanner.finditer(folded):
            spelling = m.group(1)
            while spelling and spelling not in self._found:  # drop the tail of ー marks
                spelling = spelling[:-1]
            start = m.start()
            for found in self._found.get(spelling, ()):
                end = start + found.length
                while folded.startswith(_LONG_VOWEL, end):  # マネージャ + ー
                    end += 1
                {"phrase": hits, "exclude": excluded}.get(found.part, parts).append(
                    (found, start, end))
        if not hits and not parts:
            return NO_INTENT
        labels: list[str] = []
        matched: list[str] = []
        for label in LABELS:
            for found, start, end in hits:
                if found.label != label or any(
                        x.label == label and s < end and start < e for x, s, e in excluded):
                    continue
                if label in self._negatable and self._declined(folded, start, end):
                    continue
                if label not in labels:
                    labels.append(label)
                if found.written not in matched:
                    matched.append(found.written)
            if label in self._structures and label not in labels:
                fired = self._structure(label, folded, parts, excluded)
                if fired:
                    labels.append(label)
                    matched += [w for w in fired if w not in matched]
        if not labels:
            return NO_INTENT
        return Intent(labels=frozenset(labels), matched=tuple(matched))

    def _structure(self, label: str, text: str, parts: list[tuple[_Found, int, int]],
                   excluded: list[tuple[_Found, int, int]]) -> tuple[str, ...]:
        """The role and request spellings that make `label` by its structure rule, or ()."""
        rule = self._structures[label]
        requests = [(f, s, e) for f, s, e in parts if f.label == label and f.part == "request"]
        for role, start, end in parts:
            if role.label != label or role.part != "role" or any(
                    x.label == label and s < end and start < e for x, s, e in excluded):
                continue
            spans: list[tuple[int, tuple[str, ...]]] = []
            if len(text) - (end - start) <= rule.alone:
                spans.append((end, (role.written,)))
            window = rule.window[bool(_WORD.match(role.written[:1].lower()))]
            spans += [(max(end, e), (role.written, request.written))
                      for request, s, e in requests
                      if max(s - end, start - e) <= window]
            for span_end, written in spans:  # declined before the role, after either
                if label not in self._negatable or not (
                        self._declined(text, start, end) or self._declined(text, start, span_end)):
                    return written
        return ()

    def hints(self, lang: str) -> list[str]:
        """Phrases for Twilio's <Gather hints> in `lang` (ja, en, ja-JP, en-US ...): at most
        500, each at most 100 characters, no duplicates; join them with ", "."""
        key = lang.split("-", 1)[0].lower()
        if key not in self._hints:
            raise ValueError(f"no hints for language {lang!r}; use one of {', '.join(LANGS)}")
        return list(self._hints[key])

    def _declined(self, text: str, start: int, end: int) -> bool:
        return (self._after.match(text, end) is not None
                or self._before.search(text, 0, start) is not None)


def _with_prefixes(spellings: dict[str, list[_Found]]) -> dict[str, tuple[_Found, ...]]:
    """For every spelling, itself and every shorter spelling it begins with (that would
    match there too: a Latin word must end where the longer spelling has no letter)."""
    table = {}
    for spelling, own in spellings.items():
        found = list(own)
        for cut in range(len(spelling) - 1, 0, -1):
            shorter = spelling[:cut]
            if shorter in spellings and not (_WORD.match(shorter[-1])
                                             and _WORD.match(spelling[cut])):
                found += spellings[shorter]
        table[spelling] = tuple(found)
    return table


def load_lexicon(path: str | Path) -> Lexicon:
    """Read, validate and compile flows/intents.yaml; a bad value raises FlowError naming
    the file, the line, the key and the fix."""
    path = Path(path)
    data = load_file(path, SCHEMA)
    source = _Source(path)

    def spellings_of(*at: str) -> set[str]:
        """Every spelling of the phrases at `at` + ja and en (exclude and hints may be absent)."""
        found: set[str] = set()
        for lang in LANGS:
            node: Any = data
            for part in at:
                node = node.get(part, {})
            for i, phrase in enumerate(node.get(lang, [])):
                found.update(_spellings(phrase, [*at, lang, i], source))
        return found

    spellings: dict[str, list[_Found]] = {}
    structures: dict[str, _Structure] = {}
    for label in LABELS:
        entry = data["labels"][label]
        for lang in LANGS:
            for i, phrase in enumerate(entry["phrases"][lang]):
                at = ["labels", label, "phrases", lang, i]
                if len(canonical(phrase)) > MAX_HINT_CHARS:
                    raise source.error(at, f"the canonical form of {phrase!r} is longer than "
                                           f"{MAX_HINT_CHARS} characters, Twilio's hint limit",
                                       "put a shorter spelling first in each group")
                for folded, written in _spellings(phrase, at, source,
                                                  min_chars=MIN_CHARS).items():
                    _add(spellings, folded, _Found(label, "phrase", written, len(folded)))
        for folded in spellings_of("labels", label, "exclude"):
            _add(spellings, folded, _Found(label, "exclude", folded, len(folded)))
        if "structure" in entry:
            rule = entry["structure"]
            structures[label] = _Structure({False: rule["window"]["ja"],
                                            True: rule["window"]["en"]}, rule["alone"])
            for part in ("role", "request"):
                for lang in LANGS:
                    for i, phrase in enumerate(rule[part + "s"][lang]):
                        at = ["labels", label, "structure", part + "s", lang, i]
                        for folded, written in _spellings(phrase, at, source,
                                                          min_chars=MIN_CHARS).items():
                            _add(spellings, folded, _Found(label, part, written,
                                                           len(folded)))
    negatable = frozenset(label for label in LABELS if data["labels"][label]["negatable"])
    scanner = re.compile(f"(?=({_trie(spellings, tail=_LONG_VOWEL + '*')}))")

    hints: dict[str, list[str]] = {}
    for lang in LANGS:  # explicit hints of every label first, then canonical forms
        explicit = [hint for label in LABELS
                    for hint in data["labels"][label].get("hints", {}).get(lang, [])]
        phrases = [canonical(p) for label in LABELS
                   for p in [*data["labels"][label]["phrases"][lang],
                             *data["labels"][label].get("structure", {}).get("roles", {})
                             .get(lang, [])]]
        hints[lang] = _dedupe(h.strip() for h in explicit + phrases)[:MAX_HINTS]

    after, before = data["negation"]["after"], data["negation"]["before"]
    particles = _trie(spellings_of("negation", "after", "particles"))
    after_cues = _trie(spellings_of("negation", "after", "cues"))
    before_cues = _trie(spellings_of("negation", "before", "cues"))
    breakers = _trie(spellings_of("negation", "before", "breakers"))
    declined_after = re.compile(
        rf"(?: ?(?:{particles})){{0,{after['max_particles']}}} ?(?:{after_cues})")
    declined_before = re.compile(
        rf"(?:{before_cues})(?: +(?!(?:{breakers}))\S+){{0,{before['max_words']}}} *$")
    return Lexicon(scanner, _with_prefixes(spellings), negatable, declined_after,
                   declined_before, hints, structures)


def _add(spellings: dict[str, list[_Found]], folded: str, found: _Found) -> None:
    """Record one spelling; the first phrase that spells it names it for each label."""
    known = spellings.setdefault(folded, [])
    if not any(k.label == found.label and k.part == found.part for k in known):
        known.append(found)


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))
