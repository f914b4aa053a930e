"""X-Twilio-Signature on every Twilio webhook: 403 and no change unless Twilio signed
PUBLIC_BASE_URL plus the raw path and query exactly as received."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from ivr import keys
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE_URL, parse_twiml, sign
from tests.factories import declare, new_sid

CALLER = "+819012345678"
OTHER_TOKEN = "another-accounts-auth-token-000000"
RAW_QUERY_PATH = "/voice/connecting?join=1&note=%E3%81%82%20b%2Fc"


def webhook_paths(app: Any) -> list[tuple[str, str]]:
    """(endpoint, path) of every Twilio-facing route, sample values for any URL arguments."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("voice.", "sms.")):
            assert "POST" in rule.methods, rule.rule
            path = rule.rule
            for name in rule.arguments:
                path = path.replace(f"<{name}>", "x")
            found.append((rule.endpoint, path))
    return sorted(found)


def form_for(call_sid: str) -> dict[str, str]:
    """Everything any of the webhooks reads, so a passed check would really change state."""
    return {
        "CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": CALLER,
        "To": "+815012345678", "CallStatus": "completed", "CallDuration": "42",
        "Digits": "1", "SpeechResult": "メールが届かない", "Confidence": "0.9",
        "QueuePosition": "1", "QueueTime": "30",
        "MessageSid": "SM" + "1" * 32, "MessageStatus": "undelivered", "ErrorCode": "21610",
        "Body": "STOP",
    }



@pytest.fixture
def queued_caller(admin: Any, twilio_post: Any, svc: Any) -> str:
    """An incident, and a caller who came in and now waits for an operator."""
    declare(admin)
    sid = new_sid()
    parse_twiml(twilio_post("/voice/incoming", **{k: v for k, v in form_for(sid).items()
                                                  if k in ("CallSid", "From", "To")}))
    parse_twiml(twilio_post("/voice/gather", CallSid=sid, Digits="1"))
    assert svc.redis.zscore(keys.waiting(), sid) is not None
    return sid


def test_the_walk_finds_the_webhooks(app):
    endpoints = [endpoint for endpoint, _ in webhook_paths(app)]
    for expected in ("voice.incoming", "voice.gather_result", "voice.queue_wait",
                     "voice.connecting", "voice.agent_line", "voice.agent_whisper",
                     "voice.status", "voice.fallback"):
        assert expected in endpoints


def test_unsigned_or_wrongly_signed_webhooks_get_403_and_change_nothing(
        app, client, svc, fake_twilio, queued_caller, snapshot):
    form = form_for(queued_caller)
    before, size = snapshot(), svc.redis.dbsize()
    assert size > 0

    for endpoint, path in webhook_paths(app):
        attempts = {
            "no header": {},
            "empty header": {"X-Twilio-Signature": ""},
            "other token": {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + path, form,
                                                       OTHER_TOKEN)},
            "other path": {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + path + "-x", form)},
            "test client url": {"X-Twilio-Signature": sign("http://localhost" + path, form)},
        }
        for what, headers in attempts.items():
            response = client.post(path, data=form, headers=headers)
            assert response.status_code == 403, (endpoint, what)
            assert b"<Response" not in response.get_data(), (endpoint, what)

    assert svc.redis.dbsize() == size
    assert snapshot() == before
    assert fake_twilio.requests == []


def test_a_signature_over_other_form_values_is_refused(client, svc, queued_caller, snapshot):
    form = form_for(queued_caller)
    signature = sign(PUBLIC_BASE_URL + "/voice/status", form)
    before = snapshot()

    tampered = {**form, "CallSid": new_sid()}
    assert client.post("/voice/status", data=tampered,
                       headers={"X-Twilio-Signature": signature}).status_code == 403
    extra = {**form, "Extra": "1"}
    assert client.post("/voice/status", data=extra,
                       headers={"X-Twilio-Signature": signature}).status_code == 403
    assert snapshot() == before


def test_correctly_signed_webhooks_are_accepted(app, client, svc, queued_caller):
    """The other side of the 403s above: the same requests, properly signed, get through."""
    form = form_for(queued_caller)
    for endpoint, path in webhook_paths(app):
        response = client.post(path, data=form,
                               headers={"X-Twilio-Signature": sign(PUBLIC_BASE_URL + path, form)})
        assert response.status_code == 200, (endpoint, response.get_data(as_text=True))
    assert svc.redis.hget(keys.call(queued_caller), "state") == "completed"


def connecting_state(svc: Any, sid: str) -> str | None:
    return svc.redis.hget(keys.call(sid), "state")


def test_a_percent_encoded_query_is_checked_over_the_raw_url(client, svc, queued_caller):
    form = {"CallSid": queued_caller}
    signature = sign(PUBLIC_BASE_URL + RAW_QUERY_PATH, form)

    response = client.post(RAW_QUERY_PATH, data=form, headers={"X-Twilio-Signature": signature})

    root = parse_twiml(response)
    assert root.find("Dial/Conference").text == queued_caller
    assert connecting_state(svc, queued_caller) == "connected"


@pytest.mark.parametrize("signed_url", [
    PUBLIC_BASE_URL + unquote(RAW_QUERY_PATH),  # what a framework's decoded URL looks like
    PUBLIC_BASE_URL.replace("https://", "http://") + RAW_QUERY_PATH,  # TLS ended at a proxy
    "http://localhost" + RAW_QUERY_PATH,  # the Host the request arrived with
    PUBLIC_BASE_URL + "/voice/connecting",  # the query left out
    PUBLIC_BASE_URL + "/voice/connecting?join=1&note=%e3%81%82%20b%2fc",  # re-encoded
])
def test_a_signature_over_any_other_url_is_refused(
        client, svc, queued_caller, signed_url, snapshot):
    form = {"CallSid": queued_caller}
    assert PUBLIC_BASE_URL.startswith("https://")
    before = snapshot()

    response = client.post(RAW_QUERY_PATH, data=form,
                           headers={"X-Twilio-Signature": sign(signed_url, form)})

    assert response.status_code == 403
    assert connecting_state(svc, queued_caller) == "queued"
    assert snapshot() == before


FORWARDED = {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "attacker.example",
             "X-Forwarded-For": "203.0.113.9", "Host": "internal:8000"}


def test_forwarded_headers_do_not_change_the_url_that_is_checked(client, svc, queued_caller):
    form = {"CallSid": queued_caller}
    good = sign(PUBLIC_BASE_URL + RAW_QUERY_PATH, form)

    response = client.post(RAW_QUERY_PATH, data=form,
                           headers={**FORWARDED, "X-Twilio-Signature": good})

    assert parse_twiml(response).find("Dial/Conference").text == queued_caller
    assert connecting_state(svc, queued_caller) == "connected"


@pytest.mark.parametrize("signed_base", [
    "http://attacker.example", "https://attacker.example", "http://internal:8000",
])
def test_a_signature_over_the_forwarded_url_is_refused(client, svc, queued_caller,
                                                        signed_base, snapshot):
    form = {"CallSid": queued_caller}
    before = snapshot()

    response = client.post(RAW_QUERY_PATH, data=form, headers={
        **FORWARDED, "X-Twilio-Signature": sign(signed_base + RAW_QUERY_PATH, form)})

    assert response.status_code == 403
    assert snapshot() == before


def test_the_test_helpers_sign_with_the_apps_token(app):
    assert app.config["TWILIO_AUTH_TOKEN"] == AUTH_TOKEN
    assert app.config["PUBLIC_BASE_URL"] == PUBLIC_BASE_URL
