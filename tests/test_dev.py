"""`ivr call` / `ivr sms` against the real app over real HTTP, and the console Twilio backend.

The app is served by werkzeug in a thread on 127.0.0.1:<free port> with PUBLIC_BASE_URL set
to that address, so every request is signed and checked exactly as with Twilio. Time is
frozen by the `svc` fixture; the server thread sees the same frozen clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from ivr import create_app, keys
from ivr.cli import cli
from ivr.dev.phone import Input, Phone, Printer
from ivr.dev.rest import CONSOLE
from ivr.services import Services, twilio_client
from tests.conftest import ADMIN_TOKEN, AUTH_TOKEN

CALLER = "+819012345678"
STRANGER = "+819087654321"
ANNOUNCEMENT = "現在、メールサービスがご利用いただけない状況です。"
MENU = "ご用件をお話しください。"
QUEUE_INTRO = "順番に担当者におつなぎいたしますので、このままお待ちください。"


class _Late:
    """A WSGI app filled in after the server knows its port (PUBLIC_BASE_URL needs it)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def live(config: dict[str, Any], svc: Services) -> Iterator[Any]:
    """The app on a real port; yields it with .url and an admin test client."""
    late = _Late()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    late.app = create_app({**config, "PUBLIC_BASE_URL": url}, services=svc)
    late.app.url = url
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield late.app
    server.shutdown()
    server.server_close()
    thread.join(5)


def admin(app: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = getattr(app.test_client(), method)(
        path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)
    assert response.status_code < 300, response.get_json()
    return response.get_json()


@pytest.fixture
def incident(live: Any) -> dict[str, Any]:
    admin(live, "put", "/api/customers", json={
        "phone": CALLER, "name": "山田太郎", "services": ["mail"], "region": "kanto",
        "language": "ja", "tier": "standard"})
    return admin(live, "post", "/api/incidents", json={
        "title": "メール障害", "severity": "major", "scope": {"services": ["mail"]},
        "audience": "affected", "announcement": {"ja": ANNOUNCEMENT,
                                                 "en": "Our mail service is unavailable."}})


@pytest.fixture
def roster(live: Any) -> None:
    admin(live, "put", "/api/supervisors", json=[
        {"name": "高橋SV", "phone": "+819011110001", "skills": ["general"], "level": 3,
         "on_call": True, "order": 1}])


def ivr(live: Any, *args: str) -> Any:
    """Run the `ivr` command line as a developer would, against the live server."""
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": live.url}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_an_affected_caller_hears_the_announcement_the_menu_and_the_queue(live, incident,
                                                                         svc):
    result = ivr(live, "call", "--from", CALLER)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    says = [line for line in lines if line.startswith("SAY: ")]
    assert says[0].startswith("SAY: [ja-JP Polly.Mizuki] お電話ありがとうございます。")
    assert any(ANNOUNCEMENT in line for line in says)
    assert any(MENU in line for line in says)
    assert any(QUEUE_INTRO in line for line in says)
    assert any("1番目にお待ちいただいております" in line for line in says)  # the waitUrl
    assert "CALLER: (silence: the gather times out)" in lines
    assert "QUEUE: enqueued in 'support'" in lines
    assert [line.split(" POST ")[1] for line in lines if line.startswith("TURN: ")] == [
        "/voice/incoming", "/voice/gather", "/voice/queue-wait"]
    assert lines[-1] == "END: hung up; status callback completed -> HTTP 200"
    (sid,) = svc.redis.zrange(keys.calls_recent(), 0, -1)
    record = svc.redis.hgetall(keys.call(sid))
    assert record["from"] == CALLER and record["state"] == "completed"
    assert "affected" in record["tags"]


def test_scripted_keys_choose_the_menu_and_subscribe_in_the_queue(live, incident, svc):
    result = ivr(live, "call", "--from", CALLER, "--digits", "1", "--digits", "1",
                 "--wait-loops", "2", "--leave-open")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "CALLER: presses 1" in lines
    assert [line.split(" POST ")[1] for line in lines if line.startswith("TURN: ")] == [
        "/voice/incoming", "/voice/gather", "/voice/queue-wait", "/voice/queue-key",
        "/voice/queue-wait"]
    assert lines[-1] == "END: left the call open (no status callback)"
    (sid,) = svc.redis.zrange(keys.calls_recent(), 0, -1)
    assert svc.redis.hget(keys.call(sid), "purpose") == "incident"
    assert svc.redis.hget(keys.call(sid), "state") == "queued"
    assert svc.redis.sismember(keys.incident_subscribers(incident["id"]), CALLER)


def test_asking_for_a_manager_ends_in_the_callers_conference(live, incident, roster, svc):
    result = ivr(live, "call", "--from", CALLER, "--say", "責任者を出してください")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "CALLER: says 「責任者を出してください」" in lines
    (sid,) = svc.redis.zrange(keys.calls_recent(), 0, -1)
    assert any("責任者におつなぎいたします。" in line for line in lines)
    assert f"CONFERENCE: joined conference {sid}; the simulator stops here" in lines
    # the warm transfer had started; the simulated caller then hung up before an SV came
    assert svc.redis.hget(keys.call(sid), "esc_state") == "abandoned"


def test_the_third_call_goes_straight_to_an_sv(live, incident, roster, clock):
    for _ in range(2):
        assert "QUEUE: enqueued in 'support'" in ivr(live, "call", "--from", CALLER).output
        clock.tick(600)
    third = ivr(live, "call", "--from", CALLER).output

    assert "何度もお電話をいただき" in third
    assert "GATHER" not in third
    assert "CONFERENCE: joined conference CA" in third


def test_inputs_are_replayed_in_command_line_order(live, incident):
    """--digits 9 (the SMS toggle) first, then words at the menu that follows it."""
    result = ivr(live, "call", "--from", CALLER, "--digits", "9", "--say", "上の人に代わって")

    lines = result.output.splitlines()
    said = [line for line in lines if line.startswith("CALLER: ")]
    assert said == ["CALLER: presses 9", "CALLER: says 「上の人に代わって」",
                    "CALLER: (silence: the gather times out)"]  # the last: the queue's offer
    stopped = next(i for i, line in enumerate(lines) if "SMSでのお知らせを停止いたしました" in line)
    assert lines.index("CALLER: presses 9") < stopped < lines.index(said[1])
    # nobody is on call, so the manager request ends at the front of the queue
    assert any("ただいま責任者がお電話に出られない状況です" in line for line in lines)


def test_a_wrong_token_is_refused_and_reported(live, incident):
    result = CliRunner().invoke(cli, ["call", "--from", CALLER], catch_exceptions=False,
                                env={"TWILIO_AUTH_TOKEN": "not-the-token",
                                     "PUBLIC_BASE_URL": live.url})

    assert result.exit_code == 1
    assert "ERROR: 403: the signature was refused" in result.output


def test_nothing_listening_is_a_clear_error(free_port_url):
    result = CliRunner().invoke(cli, ["sms", "--from", CALLER, "状況"],
                                env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                                     "PUBLIC_BASE_URL": free_port_url})

    assert result.exit_code == 1
    assert "cannot reach" in result.output and "scripts/dev" in result.output


@pytest.fixture
def free_port_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_sms_stop_prints_the_opt_out_confirmation(live, incident, svc):
    result = ivr(live, "sms", "--from", CALLER, "停止")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"SMS: from {CALLER} to +815012345678 message_sid=SM")
    assert lines[1] == "MESSAGE: 障害・復旧のお知らせSMSの配信を停止しました。"
    assert lines[2] == "    再開をご希望の場合は「再開」とご返信ください。"
    assert svc.redis.sismember(keys.sms_optout(), CALLER)


def test_the_phone_class_keeps_the_transcript_and_the_outcome(live, incident):
    heard: list[str] = []
    phone = Phone(live.url, AUTH_TOKEN, STRANGER, printer=Printer(heard.append, fancy=True))

    result = phone.call([Input("digits", "2")])

    assert result.outcome == "queue"
    assert result.turns == 3
    assert result.transcript == "\n".join(heard)
    assert heard[0].startswith(f"📞 from {STRANGER}")
    assert not any(ANNOUNCEMENT in line for line in heard)  # not an affected customer
    assert "🗣  presses 2" in heard


def test_interactive_answers_come_from_ask(live, incident):
    asked: list[str] = []

    def ask(accepts: str) -> str | None:
        asked.append(accepts)
        return "責任者を出して" if len(asked) == 1 else None

    result = Phone(live.url, AUTH_TOKEN, CALLER, printer=Printer(lambda _: None)).call(ask=ask)

    # the menu takes speech and keys; the queue's "1 for SMS updates" takes keys only
    assert asked == ["dtmf / speech", "dtmf"]
    assert result.outcome == "queue"  # nobody is on call: the front of the queue


def test_max_turns_bounds_a_loop(live, incident):
    result = Phone(live.url, AUTH_TOKEN, CALLER, printer=Printer(lambda _: None),
                   max_turns=1).call()

    assert result.outcome == "max-turns"
    assert result.turns == 1


# -- the console Twilio backend ------------------------------------------------------------

def test_rest_standin_answers_with_sids_and_logs_masked(caplog):
    client = twilio_client({"TWILIO_API_BASE_URL": CONSOLE,
                            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                            "TWILIO_AUTH_TOKEN": "secret-token"})
    body = "障害のお知らせ：メールサービスが停止しています。"

    with caplog.at_level(logging.INFO, logger="ivr.dev.rest"):
        message = client.messages.create(to=CALLER, from_="+815012345678", body=body)
        leg = client.calls.create(to="+819011110001", from_="+815012345678",
                                  url="https://ivr.example.test/voice/sv-whisper?call=CA1&"
                                      "attempt=0", method="POST")
        updated = client.calls(leg.sid).update(status="completed")
        client.calls(leg.sid).update(url="https://ivr.example.test/voice/connecting?join=1",
                                     method="POST")
        listed = client.messages.list(to=CALLER, limit=50)

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert leg.sid.startswith("CA") and len(leg.sid) == 34
    assert updated.sid == leg.sid
    assert [m.sid for m in listed] == [message.sid]
    assert listed[0].body == body and listed[0].date_created is not None
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "to=+81******5678 body_chars=24" in logged
    assert "to=+81******0001 url=/voice/sv-whisper?call=CA1&attempt=0" in logged
    assert f"POST Calls/{leg.sid} status=completed" in logged
    assert f"POST Calls/{leg.sid} url=/voice/connecting?join=1" in logged
    for secret in (CALLER, "+819011110001", body, "secret-token", "メール"):
        assert secret not in logged


def test_rest_standin_refuses_what_it_does_not_simulate(caplog):
    from twilio.base.exceptions import TwilioRestException

    client = twilio_client({"TWILIO_API_BASE_URL": CONSOLE,
                            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "x"})
    with pytest.raises(TwilioRestException) as raised:
        client.queues.create(friendly_name="support")
    assert raised.value.status == 404


def test_staying_on_the_line_shows_the_sv_being_rung(live, incident, roster, svc, run_jobs,
                                                     monkeypatch, tmp_path):
    journal = tmp_path / "rest.log"
    # the worker's Twilio client is the REST stand-in, writing its journal (as scripts/dev)
    monkeypatch.setenv("TWILIO_API_BASE_URL", CONSOLE)
    monkeypatch.setenv("IVR_DEV_REST_LOG", str(journal))
    waited: list[float] = []

    def pause(seconds: float) -> None:  # what the worker does while the caller holds
        waited.append(seconds)
        run_jobs()

    out = Printer(write=lambda line: None)
    phone = Phone(live.url, AUTH_TOKEN, CALLER, printer=out)
    result = phone.call([Input("speech", "責任者を出してください")], stay=2,
                        journal=str(journal), pause=pause)

    assert result.outcome == "conference"
    assert sum(waited) == 2
    lines = out.lines
    rest = [line for line in lines if line.startswith("REST: ")]
    assert any(line.startswith("REST: console twilio: POST Calls to=+81******0001 "
                               f"url=/voice/sv-whisper?call={result.call_sid}") for line in rest)
    assert "+819011110001" not in "\n".join(lines)
    assert lines.index("NOTE: staying on the line for 2 s") < lines.index(rest[0])
    assert lines[-1] == "END: hung up; status callback completed -> HTTP 200"


def test_staying_without_a_journal_says_so(live, incident, roster):
    result = ivr(live, "call", "--from", CALLER, "--say", "責任者を出してください",
                 "--stay", "0.01")

    assert result.exit_code == 0, result.output
    assert "NOTE: IVR_DEV_REST_LOG is not set" in result.output
