"""The `ivr` command line: check (no Redis, no Twilio), routes from FlaskGroup, dev, help."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ivr import cli as ivr_cli
from ivr.cli import cli
from ivr.config import IVR_FLOWS_DIR, IVR_PROMPTS_DIR, REQUIRED, ROOT

# `ivr check` must not need any of these: an ops edit is checked before anything runs.
NO_SETTINGS: dict[str, str | None] = {name: None for name in REQUIRED}


@pytest.fixture(autouse=True)
def _flask_run_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; give it back after each test."""
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")


def run(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env={**NO_SETTINGS, **(env or {})},
                              catch_exceptions=False)


def test_check_passes_on_the_shipped_files_without_redis_or_twilio():
    result = run("check")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"flows    OK    {IVR_FLOWS_DIR} (call, escalation, incidents, sms, intents)"
    assert lines[1].startswith(f"intents  OK    {IVR_FLOWS_DIR}/intents.yaml (")
    assert lines[2].startswith("intents  OK    test set, ")
    assert re.search(r"held out: manager P 1?\.\d{3} R 1?\.\d{3}, money P", lines[2])
    assert lines[3].startswith("intents  OK    tune set, ")
    assert lines[-2].startswith(f"prompts  OK    {IVR_PROMPTS_DIR} (")
    assert "× ja, en" in lines[-2]
    assert lines[-1] == "OK"


def test_check_fails_when_an_edit_drops_the_test_set_below_target(tmp_path):
    """An ops edit that loses manager requests is caught before it is deployed: the test
    set's figures fall below the targets and check names them."""
    flows, _ = broken_copy(tmp_path, "intents.yaml",
                           "          - (代わ|替わ|変わ|かわ|換わ)(って|れ)",
                           "          - (代わりません)")

    result = run("check", env={"IVR_FLOWS_DIR": str(flows)})

    assert result.exit_code == 1
    assert "intents  FAIL  test set, " in result.output
    assert "intents  FAIL  test set below target: manager recall 0." in result.output
    assert result.output.splitlines()[-1] == "FAILED: 1 problem"


def broken_copy(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """A copy of flows/ with one line of `name` changed; returns the dir and that line."""
    flows = tmp_path / "flows"
    shutil.copytree(IVR_FLOWS_DIR, flows)
    path = flows / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.rstrip("\n") == old)
    lines[number - 1] = new + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    return flows, number


def test_check_fails_naming_the_file_the_line_and_the_fix(tmp_path):
    flows, line = broken_copy(tmp_path, "call.yaml", "  timeout: 5", "  timeout: 99")

    result = run("check", env={"IVR_FLOWS_DIR": str(flows)})

    assert result.exit_code == 1
    assert (f"flows    FAIL  {flows}/call.yaml:{line}: gather.timeout: 99 is greater than the "
            "maximum of 30. Fix: use seconds to wait for a key, 1 to 30.") in result.output
    assert "intents  OK" in result.output  # the other parts are still checked
    assert "prompts  OK" in result.output
    assert result.output.splitlines()[-1] == "FAILED: 1 problem"


def test_check_reports_a_broken_lexicon(tmp_path):
    flows, line = broken_copy(tmp_path, "intents.yaml", "    negatable: true",
                              "    negatable: maybe")

    result = run("check", env={"IVR_FLOWS_DIR": str(flows)})

    assert result.exit_code == 1
    assert f"intents  FAIL  {flows}/intents.yaml:{line}: " in result.output


def test_check_names_the_template_line_of_an_undefined_variable(tmp_path):
    prompts = tmp_path / "prompts"
    shutil.copytree(IVR_PROMPTS_DIR, prompts)
    (prompts / "en" / "goodbye.j2").write_text("Thank you.\n{{ caller_nmae }}\n",
                                               encoding="utf-8")

    result = run("check", env={"IVR_PROMPTS_DIR": str(prompts)})

    assert result.exit_code == 1
    assert (f"prompts  FAIL  {prompts}/en/goodbye.j2:2: UndefinedError: 'caller_nmae' is "
            "undefined") in result.output
    assert "FAILED: 1 problem" in result.output


def test_check_names_a_syntax_error_and_warns_on_a_missing_translation(tmp_path):
    prompts = tmp_path / "prompts"
    shutil.copytree(IVR_PROMPTS_DIR, prompts)
    (prompts / "en" / "goodbye.j2").unlink()

    missing = run("check", env={"IVR_PROMPTS_DIR": str(prompts)})
    assert missing.exit_code == 0, missing.output
    assert (f"prompts  warn  {prompts}/en/goodbye.j2 is missing: callers in en hear the "
            "Japanese text") in missing.output

    (prompts / "ja" / "menu.j2").write_text("ご用件を\n{% if %}\n", encoding="utf-8")
    broken = run("check", env={"IVR_PROMPTS_DIR": str(prompts)})
    assert broken.exit_code == 1
    assert f"prompts  FAIL  {prompts}/ja/menu.j2:2: " in broken.output


def test_routes_lists_the_twilio_webhooks(config, monkeypatch):
    for name, value in config.items():
        if name.isupper():
            monkeypatch.setenv(name, str(value))

    result = CliRunner().invoke(cli, ["routes"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    rules = {line.split()[-1] for line in result.output.splitlines()[2:] if line.strip()}
    assert {"/voice/incoming", "/voice/gather", "/voice/queue-wait", "/sms/incoming",
            "/voice/status"} <= rules


def test_routes_without_settings_says_what_is_missing():
    result = run("routes")

    assert result.exit_code == 2
    assert "missing settings: REDIS_URL" in result.output
    assert "source .run/dev.env" in result.output
    assert "Traceback" not in result.output


def test_help_lists_every_command_without_settings():
    result = run("--help")

    assert result.exit_code == 0, result.output
    for command in ("call", "check", "dev", "routes", "run", "sms"):
        assert f"  {command} " in result.output
    assert "Traceback" not in result.output and "Error" not in result.output


def test_dev_replaces_itself_with_scripts_dev(monkeypatch):
    seen: list[Any] = []
    monkeypatch.setattr(ivr_cli.os, "execve", lambda *args: seen.append(args))

    result = run("dev", "--port", "5099")

    assert result.exit_code == 0, result.output
    ((path, argv, env),) = seen
    assert Path(path) == ROOT / "scripts" / "dev"
    assert argv == [str(ROOT / "scripts" / "dev")]
    assert env["PORT"] == "5099"


def test_call_without_a_token_says_where_to_get_it():
    result = run("call", "--from", "+819012345678", env={"TWILIO_AUTH_TOKEN": None})

    assert result.exit_code == 1
    assert "TWILIO_AUTH_TOKEN is not set" in result.output
    assert "source .run/dev.env" in result.output


def _settings(config, monkeypatch):
    for name, value in config.items():
        if name.isupper():
            monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("IVR_USER_PASSWORD", raising=False)


def test_user_create_asks_for_the_password_twice_and_keeps_only_its_hash(
        config, svc, monkeypatch):
    from ivr import person

    _settings(config, monkeypatch)
    result = CliRunner().invoke(
        cli, ["user", "create", "--login", "kimura", "--role", "admin", "--name", "木村"],
        input="a long enough password\na long enough password\n", catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "a long enough password" not in result.output
    made = person.by_login(svc, "kimura")
    assert (made.role, made.name, made.created_by) == ("admin", "木村", "cli")
    assert person.authenticate(svc, "kimura", "a long enough password", client="cli") == made
    again = CliRunner().invoke(cli, ["user", "create", "--login", "kimura", "--role", "admin"],
                               input="another long password\nanother long password\n")
    assert again.exit_code == 1 and "already in use" in again.output


def test_user_create_refuses_a_short_password_and_a_bad_login(config, svc, monkeypatch):
    from ivr import person

    _settings(config, monkeypatch)
    result = CliRunner().invoke(cli, ["user", "create", "--login", "Bad Login", "--role",
                                      "operator"], input="short\nshort\n")
    assert result.exit_code == 1
    assert "login has the wrong form" in result.output and "password" in result.output
    assert person.list_people(svc) == []


def test_user_create_reset_sets_a_new_password(config, svc, monkeypatch):
    from ivr import person

    _settings(config, monkeypatch)
    first = person.create(svc, login="dev-admin", name="x", role="operator",
                          password="the first password", by="bootstrap")
    monkeypatch.setenv("IVR_USER_PASSWORD", "the second password")
    result = CliRunner().invoke(cli, ["user", "create", "--login", "dev-admin", "--role",
                                      "admin", "--reset"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"id={first.id}" in result.output
    assert person.authenticate(svc, "dev-admin", "the second password", client="c").role == (
        "admin")


def test_api_doc_check_passes_on_the_checked_in_reference():
    result = run("api-doc", "--check")
    assert result.exit_code == 0, result.output
