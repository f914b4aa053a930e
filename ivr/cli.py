"""The `ivr` command: Flask's CLI (`ivr run`, `ivr routes`, `ivr shell`) plus the local tools.

    ivr dev                                  scripts/dev: Redis, web and worker in one go
    ivr check                                flows/, the intent lexicon and prompts/ are valid
    ivr call --from +8190… [--say …] [--digits 1]   a phone: drive a running instance
    ivr sms --from +8190… 停止               an inbound SMS to a running instance

`dev`, `check`, `call` and `sms` never build the app: `check` must work before Redis or
Twilio credentials exist (an ops edit is checked before it is deployed), and `call`/`sms`
talk HTTP to an instance that is already running, as Twilio does.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from flask import Flask
from flask.cli import AppGroup, FlaskGroup, NoAppException, ScriptInfo

from ivr.config import ROOT
from ivr.dev.phone import DEFAULT_TO, MAX_TURNS, Input, Phone, PhoneError, Printer
from ivr.dev.rest import JOURNAL_ENV

SCRIPT = "ivr.script"
TOKYO = ZoneInfo("Asia/Tokyo")

# What `ivr check` renders every template with: every variable any shipped prompt uses,
# with values that take the talkative branches (an eta, a position, a status, VIP, repeat…).
SAMPLE: dict[str, Any] = {
    "text": "現在、メールサービスがご利用いただけない状況です。\n復旧に向けて対応しております。",
    "eta": datetime(2026, 11, 23, 15, 30, tzinfo=TOKYO),
    "next_update": datetime(2026, 11, 23, 11, 5, tzinfo=TOKYO),
    "position": 3, "status": "原因を特定し、復旧作業を進めております。",
    "status_code": "identified", "name": "山田太郎",
    "tags": ["affected", "vip", "repeat", "INC-20261123-0001"], "purpose": "incident",
    "transcript": "メールが届かない", "waited_minutes": 4, "trigger": "repeat",
    "intent": ["anger"], "offer_sms": True, "incident": True,
    "sender": "サポートセンター", "title": "メール障害",
    "auto": False, "optout_url": "https://ivr.example.test/u/abc",
    "due": datetime(2026, 11, 23, 11, 0, tzinfo=TOKYO), "minutes": 10,
    "who": {"name": "山田太郎", "tier": "vip", "registered": True, "call_number": 3},
    "what": {"transcript": "責任者を出して", "intent": ["manager"], "purpose": "speech"},
    "where": {"line": "+815012345678", "services": ["mail"]},
    "when": {"incident_started_at": "2026-11-23T01:00:00Z",
             "first_call_at": "2026-11-23T01:05:00Z", "call_started_at": "2026-11-23T02:00:00Z"},
    "how": {"repeat_count": 3, "waited_seconds": 300, "anger": True},
    "why": {"trigger": "repeat", "reason": "repeat", "note": "二度目の折り返しです"},
    "incident_start": datetime(2026, 11, 23, 10, 0, tzinfo=TOKYO),
    "first_call": datetime(2026, 11, 23, 10, 5, tzinfo=TOKYO),
    "window_hours": 24, "today": date(2026, 11, 23), "others": 17, "more_key": "8",
}
# The same names with nothing known: the quiet branches ("確認中", no position, no name).
EMPTY: dict[str, Any] = {
    **{name: None for name in ("eta", "next_update", "position", "status", "status_code",
                               "incident_start", "first_call")},
    **{name: "" for name in ("text", "name", "purpose", "transcript", "trigger", "sender",
                             "title", "optout_url")},
    "tags": [], "intent": [], "waited_minutes": 0, "offer_sms": False, "auto": True,
    "incident": False,
    "due": SAMPLE["due"], "minutes": 1, "window_hours": 24, "today": SAMPLE["today"],
    "others": 1, "more_key": "",
    "who": {"name": "", "tier": "", "registered": False, "call_number": 1},
    "what": {"transcript": "", "intent": [], "purpose": ""},
    "where": {"line": "", "services": []},
    "when": {"incident_started_at": None, "first_call_at": None, "call_started_at": None},
    "how": {"repeat_count": 1, "waited_seconds": 0, "anger": False},
    "why": {"trigger": "", "reason": "", "note": ""},
}


def _app() -> Flask:
    """The app for `ivr run/routes/shell`, from the environment, as gunicorn builds it."""
    from ivr import create_app

    try:
        return create_app()
    except RuntimeError as e:  # missing settings: say what to do, not a traceback
        raise NoAppException(f"{e} (after scripts/dev starts: source .run/dev.env)") from None


class IvrGroup(FlaskGroup):
    """FlaskGroup whose --help works without settings: listing commands would otherwise
    build the app, and without REDIS_URL & co. print a traceback instead of the help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            ctx.ensure_object(ScriptInfo).load_app()
        except Exception:
            self._load_plugin_commands()
            return sorted(AppGroup.list_commands(self, ctx))
        return super().list_commands(ctx)


cli = IvrGroup(create_app=_app, help=__doc__.split("\n\n")[0] if __doc__ else None)


# -- ivr dev ---------------------------------------------------------------------------------

@cli.command("dev", with_appcontext=False)
@click.option("--port", type=click.IntRange(1, 65535), help="web port (default $PORT or 5000)")
def dev(port: int | None) -> None:
    """Run scripts/dev: Redis, the web app and the RQ worker, in the foreground.

    scripts/dev stays the one source of truth for a local start; this only finds it and
    replaces the current process with it, so Ctrl-C reaches it directly.
    """
    script = ROOT / "scripts" / "dev"
    if not script.is_file():
        raise click.ClickException(f"{script} not found: `ivr dev` needs a checkout of the "
                                   "repository (an installed wheel has no scripts/)")
    env = dict(os.environ)
    if port is not None:
        env["PORT"] = str(port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(script, [str(script)], env)


# -- ivr check -------------------------------------------------------------------------------

def _template_line(e: BaseException) -> str:
    """'path:line' of the template frame an error was raised in (Jinja puts the template's
    file and line into the traceback), or '' when it came from elsewhere."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def run_check(flows_dir: Path, prompts_dir: Path, echo: Callable[[str, bool], None]) -> int:
    """Load flows/, the lexicon and prompts/ with the loaders create_app uses, then render
    every template × language with SAMPLE and EMPTY; return the number of problems.

    `echo(line, is_problem)` gets one line per part and one per problem.
    """
    from ivr.flows import FlowError, load_flows
    from ivr.intent import load_lexicon
    from ivr.lang import LANGS
    from ivr.prompts import PromptError, Prompts

    problems = 0
    try:
        load_flows(flows_dir)
        echo(f"flows    OK    {flows_dir} (call, escalation, incidents, sms, intents)", False)
    except FlowError as e:
        problems += 1
        echo(f"flows    FAIL  {e}", True)
    try:
        lexicon = load_lexicon(flows_dir / "intents.yaml")
        hints = sum(len(lexicon.hints(lang)) for lang in LANGS)
        echo(f"intents  OK    {flows_dir / 'intents.yaml'} ({hints} speech hints)", False)
        problems += _check_corpus(lexicon, echo)
    except FlowError as e:
        problems += 1
        echo(f"intents  FAIL  {e}", True)
    try:
        prompts = Prompts(prompts_dir)
    except PromptError as e:
        echo(f"prompts  FAIL  {e}", True)
        return problems + 1
    rendered, failed = 0, 0
    for name in prompts.names():
        for lang in LANGS:
            path = prompts_dir / lang / f"{name}.j2"
            if (name, lang) not in prompts.templates:
                echo(f"prompts  warn  {path} is missing: callers in {lang} hear the "
                     "Japanese text", False)
                continue
            for label, context in (("sample", SAMPLE), ("empty", EMPTY)):
                try:
                    text = prompts.render(name, lang, **context)
                except Exception as e:  # any failure to render is what this check is for
                    failed += 1
                    where = _template_line(e) or str(path)
                    echo(f"prompts  FAIL  {where}: {type(e).__name__}: {e} (rendered with "
                         f"{label} data; a new variable needs a value in ivr/cli.py SAMPLE "
                         "and EMPTY)", True)
                    break
                if label == "sample" and not text.strip():
                    failed += 1
                    echo(f"prompts  FAIL  {path}: renders to nothing with sample data", True)
                    break
                rendered += 1
    if not failed:
        echo(f"prompts  OK    {prompts_dir} ({len(prompts.names())} templates × "
             f"{', '.join(LANGS)}, {rendered} renders)", False)
    return problems + failed


def _check_corpus(lexicon: Any, echo: Callable[[str, bool], None]) -> int:
    """Score the lexicon on tests/intents/corpus.yaml: the held-out test set's figures
    against the targets (a miss of one is a problem), then the tune set's, with the
    utterances it labels wrongly (the test set's are not shown: it is not tuned on)."""
    from ivr.intent_eval import CORPUS, load_corpus, score

    if not CORPUS.is_file():
        echo(f"intents  warn  {CORPUS} is missing: precision and recall not measured", False)
        return 0
    corpus = load_corpus()
    test = score(lexicon, corpus["test"], "test")
    below = test.below_target()
    echo(f"intents  {'FAIL' if below else 'OK  '}  test set, {test.total} held out: "
         f"{test.summary()}", bool(below))
    for line in below:
        echo(f"intents  FAIL  test set below target: {line} (ivr/intent_eval.py TARGETS)",
             True)
    tune = score(lexicon, corpus["tune"], "tune")
    echo(f"intents  OK    tune set, {tune.total}: {tune.summary()}; "
         f"{tune.total - len(tune.misses)} labelled exactly right", False)
    for line in tune.misses:
        echo(f"intents  miss {line.strip()}", False)
    return len(below)


@cli.command("check", with_appcontext=False)
def check() -> None:
    """Validate flows/, the intent lexicon and prompts/, and render every prompt.

    Reads IVR_FLOWS_DIR and IVR_PROMPTS_DIR (default: the checkout's flows/ and prompts/),
    and needs neither Redis nor Twilio credentials, so an edit can be checked before it is
    deployed. Exits 1 naming the file, the line and the fix of each problem.
    """
    from ivr import config

    settings = config.settings_from_env()
    flows_dir = Path(settings.get("IVR_FLOWS_DIR", config.IVR_FLOWS_DIR))
    prompts_dir = Path(settings.get("IVR_PROMPTS_DIR", config.IVR_PROMPTS_DIR))
    problems = run_check(flows_dir, prompts_dir,
                         lambda line, bad: click.echo(line, err=bad))
    if problems:
        click.echo(f"FAILED: {problems} problem{'s' if problems > 1 else ''}", err=True)
        sys.exit(1)
    click.echo("OK")


# -- ivr call / ivr sms ----------------------------------------------------------------------

class ScriptedCommand(click.Command):
    """Keeps the command-line order of --say and --digits: click gathers each repeated
    option into its own tuple, but a caller who says something and then presses a key
    must be replayed in that order, one input per <Gather>."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        opts, _, order = self.make_parser(ctx).parse_args(args=list(args))
        left = {name: list(opts.get(name) or ()) for name in ("say", "digits")}
        script: list[Input] = []
        for param in order:
            if param.name in left and left[param.name]:
                value = str(left[param.name].pop(0))
                script.append(Input("speech" if param.name == "say" else "digits", value))
        ctx.meta[SCRIPT] = script
        return super().parse_args(ctx, args)


def _default_url() -> str:
    return os.environ.get("PUBLIC_BASE_URL") or \
        f"http://127.0.0.1:{os.environ.get('PORT') or 5000}"


def _phone(from_: str, to: str, url: str | None, public_url: str | None, plain: bool,
           **options: Any) -> Phone:
    token = os.environ.get("TWILIO_AUTH_TOKEN", "")
    if not token:
        raise click.ClickException(
            "TWILIO_AUTH_TOKEN is not set: every webhook is signed with the instance's token. "
            "After scripts/dev starts: source .run/dev.env")
    fancy = not plain and sys.stdout.isatty()
    base = url or _default_url()
    public = public_url or os.environ.get("PUBLIC_BASE_URL") or base
    return Phone(base, token, from_, to=to, public_url=public,
                 printer=Printer(click.echo, fancy=fancy), **options)


def _ask(accepts: str) -> str | None:
    """Interactive turn: what the caller says or presses; Enter or end of input is silence."""
    try:
        return input(f"   you ({accepts}; Enter = silence)> ")
    except EOFError:
        click.echo()  # end the prompt's line
        return None


def _endpoint_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--from", "from_", required=True, metavar="NUMBER",
                     help="the caller's number, e.g. +819012345678 (or anonymous)"),
        click.option("--to", default=lambda: os.environ.get("TWILIO_FROM_NUMBER") or DEFAULT_TO,
                     show_default="$TWILIO_FROM_NUMBER or " + DEFAULT_TO,
                     help="the support number called"),
        click.option("--url", default=None,
                     help="where the instance listens [default: $PUBLIC_BASE_URL or "
                          "http://127.0.0.1:$PORT]"),
        click.option("--public-url", default=None,
                     help="the PUBLIC_BASE_URL the instance signs against, when --url is "
                          "another address for it (a tunnel) [default: $PUBLIC_BASE_URL "
                          "or --url]"),
        click.option("--plain", is_flag=True,
                     help="plain 'SAY: …' lines even on a terminal"),
    ]):
        f = option(f)
    return f


@cli.command("call", cls=ScriptedCommand, with_appcontext=False)
@_endpoint_options
@click.option("--say", multiple=True, metavar="TEXT",
              help="words the caller says at the next <Gather> (repeatable)")
@click.option("--digits", multiple=True, metavar="KEYS",
              help="keys the caller presses at the next <Gather> (repeatable)")
@click.option("--path", default="/voice/incoming", show_default=True,
              help="the first webhook (e.g. /voice/agent-line to be an operator)")
@click.option("--wait-loops", type=click.IntRange(0, 10), default=1, show_default=True,
              help="times to play the queue's waitUrl before stopping")
@click.option("--max-turns", type=click.IntRange(1, 100), default=MAX_TURNS,
              show_default=True, help="webhooks at most")
@click.option("--interactive/--no-interactive", default=None,
              help="ask at each <Gather> [default: on a terminal without --say/--digits]")
@click.option("--leave-open", is_flag=True,
              help="send no 'completed' status: the call stays live (queued, in conference)")
@click.option("--stay", type=click.FloatRange(0, 600), default=0, metavar="SECONDS",
              help="once in a conference or a queue, hold the line this long and print what "
                   "the local REST stand-in was asked meanwhile (the SV being rung), from "
                   "$IVR_DEV_REST_LOG")
def call(from_: str, to: str, url: str | None, public_url: str | None, plain: bool,
         say: tuple[str, ...], digits: tuple[str, ...], path: str, wait_loops: int,
         max_turns: int, interactive: bool | None, leave_open: bool, stay: float) -> None:
    """Call a running instance as Twilio would, and print what the caller hears.

    Every webhook is signed with $TWILIO_AUTH_TOKEN over the exact URL; <Gather> takes the
    next --say/--digits in command-line order, else asks (interactive), else times out;
    <Redirect> is followed; <Enqueue> plays the waitUrl; the call stops when the caller is
    queued, joined to a conference or hung up, and ends with the /voice/status callback;
    --stay N holds the line N seconds first, printing the REST stand-in's requests.
    """
    if not path.startswith("/"):
        raise click.BadParameter("must start with /", param_hint="--path")
    script = click.get_current_context().meta.get(SCRIPT, [])
    if interactive is None:
        interactive = not script and sys.stdin.isatty()
    phone = _phone(from_, to, url, public_url, plain, wait_loops=wait_loops,
                   max_turns=max_turns)
    result = phone.call(script, ask=_ask if interactive else None, path=path,
                        hang_up=not leave_open, stay=stay,
                        journal=os.environ.get(JOURNAL_ENV) or None)
    if result.outcome == "error":
        sys.exit(1)


@cli.command("sms", with_appcontext=False)
@_endpoint_options
@click.argument("body")
def sms(from_: str, to: str, url: str | None, public_url: str | None, plain: bool,
        body: str) -> None:
    """Send one inbound SMS (BODY, e.g. 停止, 再開, 状況) to a running instance as Twilio
    would, signed, and print the reply."""
    phone = _phone(from_, to, url, public_url, plain)
    try:
        phone.text(body)
    except PhoneError as e:
        raise click.ClickException(str(e)) from None


@cli.command("sms-resume")
@click.argument("incident_id")
@click.argument("seq", type=click.IntRange(min=0))
def sms_resume(incident_id: str, seq: int) -> None:
    """Resume an update's SMS fan-out that a Twilio refusal about the account, sender or
    message halted (the worker's log names the command), once the cause is fixed."""
    from ivr import current_services, delivery

    code = delivery.resume(current_services(), incident_id, seq)
    if code is None:
        raise click.ClickException(f"update {seq} of {incident_id} is not halted")
    click.echo(f"resumed update {seq} of {incident_id} (halted by Twilio error {code}); "
               "its sweep is queued")


# -- ivr user create / ivr api-doc -------------------------------------------------------------

@cli.group("user")
def user() -> None:
    """People who sign in (the API and the console)."""


@user.command("create")
@click.option("--login", required=True, help="lower-case letters, digits, '.', '_', '-'")
@click.option("--role", required=True, type=click.Choice(["admin", "supervisor", "operator"]))
@click.option("--name", help="the name shown beside their changes (default: the login)")
@click.option("--phone", help="their phone number (optional)")
@click.password_option("--password", prompt="Password (at least 12 characters)",
                       envvar="IVR_USER_PASSWORD",
                       help="asked for when not given (or from $IVR_USER_PASSWORD)")
@click.option("--reset", is_flag=True,
              help="if the login exists, set its password, role and name instead (reactivates)")
def user_create(login: str, role: str, name: str | None, phone: str | None,
                password: str, reset: bool) -> None:
    """Add a person: how the first real admin is made without the bootstrap token."""
    from ivr import current_services, person, schemas
    from ivr.phone import normalize

    body: dict[str, Any] = {"login": login, "name": name or login, "role": role,
                            "password": password}
    if phone:
        body["phone"] = phone
    problems = schemas.validate("PersonNew", body)
    if phone and not problems and normalize(phone) is None:
        problems.append(schemas.FieldError("phone", "phone is not a valid phone number"))
    if problems:
        raise click.ClickException("; ".join(p.message for p in problems))
    svc = current_services()
    existing = person.by_login(svc, login)
    if existing is not None and reset:
        made = person.update(svc, existing.id, {"password": password, "role": role,
                                                "name": body["name"], "active": True}, by="cli")
    else:
        try:
            made = person.create(svc, login=login, name=body["name"], role=role,
                                 password=password, phone=normalize(phone) if phone else None,
                                 by="cli")
        except person.LoginTaken:
            raise click.ClickException(f"the login {login} is already in use") from None
    click.echo(f"created {made.login} ({made.role}) id={made.id}; an API token: "
               f"POST /api/people/{made.id}/tokens, or sign in to /console/")


@cli.command("api-doc", with_appcontext=False)
@click.option("--check", is_flag=True, help="fail when docs/api.md is not current")
def api_doc(check: bool) -> None:
    """Write docs/api.md from the OpenAPI document (GET /api/openapi.json)."""
    from ivr.api.openapi import api_map, document, markdown

    target = ROOT / "docs" / "api.md"
    text = markdown(document(api_map()))
    if check:
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            raise click.ClickException("docs/api.md is not current: run `ivr api-doc`")
        click.echo("docs/api.md is current")
        return
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}")
