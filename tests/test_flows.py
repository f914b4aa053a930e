"""flows/: the shipped files load; a broken one stops the start with file, line, key and fix."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from ivr import create_app
from ivr.config import IVR_FLOWS_DIR
from ivr.flows import SCHEMAS, FlowError, load_flows
from tests.conftest import make_config

SHIPPED = Path(IVR_FLOWS_DIR)


def test_the_shipped_flows_load():
    flows = load_flows(SHIPPED)

    assert flows.default_language == "ja"
    assert flows.queue_name == "support"
    assert flows.voice("ja").tts_language == "ja-JP"
    assert flows.voice("en").tts_language == "en-US"
    assert flows.cadence("critical") == timedelta(minutes=30)
    assert flows.cadence("major") == timedelta(minutes=60)
    assert flows.cadence("minor") == timedelta(minutes=120)


def test_every_shipped_yaml_file_has_a_schema():
    shipped = sorted(p.name for p in SHIPPED.iterdir() if p.suffix in (".yaml", ".yml"))
    assert shipped == sorted(SCHEMAS)


def copy_flows(tmp_path: Path) -> Path:
    target = tmp_path / "flows"
    shutil.copytree(SHIPPED, target)
    return target


def edit(path: Path, old: str, new: str) -> str:
    """Replace the one occurrence of `old` in `path`; return the edited text."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path.name} exactly once"
    edited = text.replace(old, new)
    path.write_text(edited, encoding="utf-8")
    return edited


def line_number(text: str, line: str) -> int:
    """1-based number of the line that reads exactly `line`."""
    lines = text.splitlines()
    assert lines.count(line) == 1, f"{line!r} is not in the edited text exactly once"
    return lines.index(line) + 1


HOLD_MUSIC = "  hold_music: https://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3\n"

# (file, old text, new text, the line the error must point at, dotted key, Fix: hint or None)
BROKEN = {
    "cadence too long": (
        "incidents.yaml", "  critical: 30\n", "  critical: 90\n", "  critical: 90",
        "cadence_minutes.critical", "30 to 60 minutes"),
    "cadence below the ordinary bound": (
        "incidents.yaml", "  minor: 120\n", "  minor: 60\n", "  minor: 60",
        "cadence_minutes.minor", "120 to 180 minutes"),
    "cadence missing": (
        "incidents.yaml", "  minor: 120\n", "", "cadence_minutes:",
        "cadence_minutes.minor", "120 to 180 minutes"),
    "too many announcements in full": (
        "call.yaml", "  in_full: 3\n", "  in_full: 6\n", "  in_full: 6",
        "announcements.in_full", "1 to 5"),
    "more key taken by the menu": (
        "call.yaml", '  more_key: "8"\n', '  more_key: "9"\n', '  more_key: "9"',
        "announcements.more_key", "a digit the menu does not use"),
    "queue name with a space": (
        "call.yaml", "  name: support\n", "  name: support desk\n", "  name: support desk",
        "queue.name", "a Twilio queue name"),
    "unknown tts language": (
        "call.yaml", "    tts_language: ja-JP\n", "    tts_language: jp-JP\n",
        "    tts_language: jp-JP", "languages.ja.tts_language", "a Twilio <Say> language code"),
    "unknown top-level key": (
        "call.yaml", "default_language: ja\n", "default_language: ja\ncolour: blue\n",
        "colour: blue", "colour", "one of default_language, languages"),
    "unknown nested key": (
        "call.yaml", "  timeout: 5\n", "  timeout: 5\n  speach_timeout: 3\n",
        "  speach_timeout: 3", "gather.speach_timeout", "speech_timeout"),
    "menu key of two digits": (
        "call.yaml", '  "2": other\n', '  "2": other\n  "12": more\n', '  "12": more',
        "menu.12", "single digit keys"),
    "wrong type": (
        "call.yaml", "  timeout: 5\n", "  timeout: five\n", "  timeout: five",
        "gather.timeout", "1 to 30"),
    "speech timeout of zero": (
        "call.yaml", "  speech_timeout: auto\n", "  speech_timeout: 0\n", "  speech_timeout: 0",
        "gather.speech_timeout", "whole seconds"),
    "required key missing": (
        "call.yaml", HOLD_MUSIC, "", "queue:", "queue.hold_music", "an http(s) URL"),
    "bad default language": (
        "call.yaml", "default_language: ja\n", "default_language: fr\n", "default_language: fr",
        "default_language", "ja or en"),
    "speech model with speech timeout auto": (
        "call.yaml", "  speech_model: null\n", "  speech_model: phone_call\n",
        "  speech_timeout: auto", "gather.speech_timeout", "whole seconds"),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_value_names_file_line_key_and_fix(tmp_path, case):
    name, old, new, at, key, fix = case
    flows = copy_flows(tmp_path)
    path = flows / name
    edited = edit(path, old, new)

    with pytest.raises(FlowError) as raised:
        load_flows(flows)

    message = str(raised.value)
    assert f"{path}:{line_number(edited, at)}: {key}: " in message
    assert "Fix: " in message
    assert fix in message.split("Fix: ", 1)[1]


def test_invalid_yaml_names_file_and_line(tmp_path):
    flows = copy_flows(tmp_path)
    path = flows / "call.yaml"
    edited = edit(path, "  name: support\n", "  name: support: desk\n")

    with pytest.raises(FlowError) as raised:
        load_flows(flows)

    message = str(raised.value)
    assert f"{path}:{line_number(edited, '  name: support: desk')}: " in message
    assert "not valid YAML" in message


@pytest.mark.parametrize("name", ["call.yaml", "incidents.yaml", "escalation.yaml", "sms.yaml"])
def test_a_key_written_twice_is_refused_with_both_lines(tmp_path, name):
    flows = copy_flows(tmp_path)
    path = flows / name
    text = path.read_text(encoding="utf-8")
    first_key = next(line for line in text.splitlines()
                     if line and not line.startswith(("#", " ", "-")))
    edited = edit(path, first_key + "\n", first_key + "\n" + first_key + "\n")

    with pytest.raises(FlowError) as raised:
        load_flows(flows)

    lines = [i for i, line in enumerate(edited.splitlines(), 1) if line == first_key]
    key = first_key.split(":")[0]
    assert str(raised.value).startswith(f"{path}:{lines[1]}: {key}: written twice "
                                        f"(first on line {lines[0]})")


def test_a_missing_file_is_named(tmp_path):
    flows = copy_flows(tmp_path)
    (flows / "incidents.yaml").unlink()

    with pytest.raises(FlowError) as raised:
        load_flows(flows)

    assert f"{flows / 'incidents.yaml'}: cannot read" in str(raised.value)


def test_an_empty_file_is_refused_without_a_bogus_line(tmp_path):
    flows = copy_flows(tmp_path)
    (flows / "incidents.yaml").write_text("# nothing here\n", encoding="utf-8")

    with pytest.raises(FlowError) as raised:
        load_flows(flows)

    message = str(raised.value)
    assert message.startswith(f"{flows / 'incidents.yaml'}: ")
    assert ":None:" not in message


def test_one_edit_at_a_time_is_what_breaks_the_copy(tmp_path):
    """The copy itself loads, so each failure above comes from its one edit."""
    assert load_flows(copy_flows(tmp_path)).queue_name == "support"


def test_create_app_refuses_to_start_with_broken_flows(tmp_path, redis_server, fake_twilio):
    flows = copy_flows(tmp_path)
    edit(flows / "incidents.yaml", "  critical: 30\n", "  critical: 90\n")
    config = make_config(redis_server.url, fake_twilio.url, IVR_FLOWS_DIR=str(flows))

    with pytest.raises(FlowError, match="cadence_minutes.critical"):
        create_app(config)


def test_create_app_starts_with_a_good_copy(tmp_path, redis_server, fake_twilio):
    config = make_config(redis_server.url, fake_twilio.url,
                         IVR_FLOWS_DIR=str(copy_flows(tmp_path)))
    app = create_app(config)
    assert app.extensions["ivr"].flows.queue_name == "support"
