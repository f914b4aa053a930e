"""prompts/: every template renders in both languages; StrictUndefined, fallback, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2
import pytest

from ivr.cli import EMPTY as CHECK_EMPTY
from ivr.cli import SAMPLE as CHECK_SAMPLE
from ivr.config import IVR_PROMPTS_DIR
from ivr.lang import LANGS
from ivr.prompts import PromptError, Prompts

SHIPPED = Prompts(IVR_PROMPTS_DIR)
NAMES = SHIPPED.names()
SAMPLE = CHECK_SAMPLE  # the sample `ivr check` renders with: one list of names to keep


def test_the_shipped_prompts_cover_both_languages():
    assert set(LANGS) == {"ja", "en"}
    assert len(NAMES) >= 9
    for lang in LANGS:
        shipped = sorted(p.stem for p in (Path(IVR_PROMPTS_DIR) / lang).glob("*.j2"))
        assert shipped == NAMES, lang


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", NAMES)
def test_every_template_renders_in_every_language(name, lang, caplog):
    with caplog.at_level(logging.WARNING, logger="ivr.prompts"):
        spoken = SHIPPED.render(name, lang, **SAMPLE)

    assert isinstance(spoken, str) and spoken.strip()
    assert "\n" not in spoken and "\r" not in spoken
    assert spoken == spoken.strip()
    assert "{{" not in spoken and "{%" not in spoken
    assert not caplog.records, "a shipped prompt fell back to another language"


@pytest.mark.parametrize("name", NAMES)
def test_japanese_is_japanese_and_english_is_ascii(name):
    ja = SHIPPED.render(name, "ja", **SAMPLE)
    en = SHIPPED.render(name, "en", **{
        **SAMPLE, "text": "Mail is down.", "name": "Taro", "status": "We found the cause.",
        "transcript": "help", "who": {**SAMPLE["who"], "name": "Taro"},
        "what": {**SAMPLE["what"], "transcript": "get me a manager"},
        "why": {**SAMPLE["why"], "note": "second callback"},
        "sender": "Support", "title": "Mail outage"})
    assert any("\u3040" <= ch <= "\u30ff" for ch in ja), ja
    assert en.isascii(), en
    assert "  " not in en


@pytest.mark.parametrize("name", NAMES)
def test_every_template_renders_with_empty_values(name):
    empty = CHECK_EMPTY
    for lang in LANGS:
        assert "\n" not in SHIPPED.render(name, lang, **empty)


CUSHION = {"ja": ("ご不快な思いをさせてしまい、誠に申し訳ございません。",
                  "何度もお電話をいただき、大変申し訳ございません。",
                  "責任者におつなぎいたします。少々お待ちいただけますでしょうか。"),
           "en": ("We are truly sorry for the frustration we have caused you.",
                  "We are very sorry you have had to call us again.",
                  "A supervisor will take your call. Could you hold for a moment, please?")}


@pytest.mark.parametrize("lang", LANGS)
def test_the_cushion_apologises_first_to_a_caller_who_asked_or_was_angry(lang):
    """The guidance's Q2: a manager request or anger gets the apology before the transfer
    sentence; a repeat caller the repeat apology; an operator's escalation neither."""
    apology, repeat, transfer = CUSHION[lang]
    space = " " if lang == "en" else ""
    for trigger in ("manager", "anger"):
        assert SHIPPED.render("transfer_cushion", lang, trigger=trigger) == (
            apology + space + transfer)
    assert SHIPPED.render("transfer_cushion", lang, trigger="repeat") == (
        repeat + space + transfer)
    assert SHIPPED.render("transfer_cushion", lang, trigger="operator") == transfer


def test_announcement_speaks_local_times_and_folds_lines():
    ja = SHIPPED.render("announcement", "ja", **SAMPLE)
    en = SHIPPED.render("announcement", "en", **{**SAMPLE, "text": "Mail is down.\nSorry."})

    assert ja == ("現在、メールサービスがご利用いただけない状況です。復旧に向けて対応しております。"
                  "復旧は15時30分ごろを見込んでおります。"
                  "次回のお知らせは11時05分ごろを予定しております。")
    assert en == ("Mail is down. Sorry. We expect service to be restored by about 3:30 PM. "
                  "Our next update is planned for about 11:05 AM.")


def test_announcement_without_eta_says_it_is_being_confirmed():
    ja = SHIPPED.render("announcement", "ja", text="障害です。", eta=None, next_update=None)
    assert ja == "障害です。復旧の見込みにつきましては、現在確認中です。"


def test_whisper_names_the_tags():
    ja = SHIPPED.render("agent_whisper", "ja", **SAMPLE)
    assert ja.startswith("山田太郎様からのお電話です。VIPのお客様です。")
    assert "繰り返しのお問い合わせです。" in ja
    assert "4分お待ちいただきました。" in ja


def test_sms_keeps_the_lines():
    kept = SHIPPED.render("menu", "ja", keep_lines=True, incident=True)
    assert kept.splitlines() == ["ご用件をお話しください。",
                                 "ただいまご案内した障害についてのお問い合わせは1を、",
                                 "その他のお問い合わせは2を押してください。",
                                 "SMSでのお知らせを停止、または再開する場合は9を押してください。"]


def write(root: Path, lang: str, name: str, text: str) -> Path:
    (root / lang).mkdir(parents=True, exist_ok=True)
    path = root / lang / f"{name}.j2"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_undefined_variable_raises(tmp_path):
    write(tmp_path, "ja", "greet", "こんにちは、{{ name }}様。\n")
    write(tmp_path, "en", "greet", "Hello {{ nmae }}.\n")
    prompts = Prompts(tmp_path)

    assert prompts.render("greet", "ja", name="山田") == "こんにちは、山田様。"
    with pytest.raises(jinja2.UndefinedError, match="nmae"):
        prompts.render("greet", "en", name="Yamada")
    with pytest.raises(jinja2.UndefinedError, match="name"):
        prompts.render("greet", "ja")


def test_an_undefined_variable_inside_a_condition_raises(tmp_path):
    write(tmp_path, "ja", "cond",
          "{% if position %}{{ position }}番目{% endif %}お待ちください。\n")
    prompts = Prompts(tmp_path)

    assert prompts.render("cond", "ja", position=None) == "お待ちください。"
    with pytest.raises(jinja2.UndefinedError):
        prompts.render("cond", "ja")


def test_a_missing_english_template_falls_back_to_japanese(tmp_path, caplog):
    write(tmp_path, "ja", "only_ja", "日本語だけ\nです。\n")
    write(tmp_path, "ja", "both", "日本語\n")
    write(tmp_path, "en", "both", "English\n")

    with caplog.at_level(logging.WARNING, logger="ivr.prompts"):
        prompts = Prompts(tmp_path)
        assert prompts.render("both", "en") == "English"
        assert not [r for r in caplog.records if "both" in r.getMessage()]
        spoken = prompts.render("only_ja", "en")

    assert spoken == "日本語だけです。"
    assert [r for r in caplog.records if "only_ja" in r.getMessage()]


def test_a_template_in_neither_language_is_a_prompt_error(tmp_path):
    write(tmp_path, "ja", "x", "x\n")
    with pytest.raises(PromptError, match="nothing_here"):
        Prompts(tmp_path).render("nothing_here", "ja")


@pytest.mark.parametrize(("text", "line"), [
    ("一行目\n{{ name }\n三行目\n", 2),
    ("一行目\n二行目\n三行目\n{% if x %}\nまだ\n", 4),
    ("{% for %}\n", 1),
])
def test_a_syntax_error_names_the_file_and_line(tmp_path, text, line):
    write(tmp_path, "ja", "fine", "大丈夫\n")
    path = write(tmp_path, "en", "broken", text)

    with pytest.raises(PromptError) as raised:
        Prompts(tmp_path)

    assert str(raised.value).startswith(f"{path}:{line}: ")
