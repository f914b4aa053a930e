"""/sms/incoming: STOP/START keywords, 状況, help; one reply per MessageSid at most."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ivr import create_app, inbound, keys, undeliverable
from ivr.customer import Customer
from ivr.segments import segments
from ivr.services import build_services
from tests.conftest import PUBLIC_BASE_URL, make_config, parse_twiml, sign
from tests.factories import new_message_sid, put_active
from tests.sms import messages

SENDER = "+819012345678"
OUR_NUMBER = "+815012345678"  # TWILIO_FROM_NUMBER in tests/conftest.py
OPT_OUT_JA = ("障害・復旧のお知らせSMSの配信を停止しました。\n"
              "再開をご希望の場合は「再開」とご返信ください。")
OPT_IN_JA = ("障害・復旧のお知らせSMSの配信を再開しました。\n"
             "停止をご希望の場合は「停止」とご返信ください。")
HELP_JA = ("お問い合わせはサポート窓口（050-1234-5678）までお電話ください。\n"
           "障害の状況は「状況」、配信の停止は「停止」、再開は「再開」とご返信ください。")
NONE_JA = "現在、お知らせしている障害はございません。"


@pytest.fixture
def text(twilio_post: Any) -> Any:
    """An SMS from SENDER (or `From`) to our number; returns the response."""

    def send(body: str, sid: str | None = None, **form: str) -> Any:
        fields = {"MessageSid": sid or new_message_sid(), "AccountSid": "AC" + "0" * 32,
                  "From": SENDER, "To": OUR_NUMBER, "Body": body, "NumMedia": "0", **form}
        return twilio_post("/sms/incoming", **fields)

    return send


def add_customer(svc: Any, phone: str = SENDER, **fields: Any) -> None:
    data = {"phone": phone, "name": "山田太郎", "services": ["mail"], "region": "kanto",
            "language": "ja", "mobile": True, **fields}
    svc.redis.hset(keys.customer(phone), mapping=Customer(**data).to_hash())


def put_incident(svc: Any, incident_id: str = "INC-20261123-0001", **fields: Any
                 ) -> dict[str, Any]:
    """An active incident as the voice path and the status reply read it."""
    doc = {"id": incident_id, "title": "メール障害", "severity": "major",
           "status": "investigating", "audience": "affected",
           "scope": {"services": ["mail"], "regions": [], "numbers": []},
           "announcement": {"ja": "現在、メールサービスがご利用いただけない状況です。",
                            "en": "Our mail service is currently unavailable."},
           "eta": None, "next_update_at": "2026-11-23T02:00:00Z",
           "created_at": "2026-11-23T01:00:00Z", **fields}
    put_active(svc, doc)
    return doc


def opted_out(svc: Any, phone: str = SENDER) -> bool:
    return bool(svc.redis.sismember(keys.sms_optout(), phone))


# --- opting out and in ----------------------------------------------------------------------


@pytest.mark.parametrize("body", ["STOP", "stop", " Stop \n", "ＳＴＯＰ", "停止", "配信停止",
                                  "停止。", "UNSUBSCRIBE", "STOPALL", "stop all", "CANCEL",
                                  "END", "QUIT", "Stop!"])
def test_stop_words_opt_out_and_confirm_once(svc, text, body):
    response = text(body)

    assert response.mimetype == "text/xml"
    assert messages(response) == [OPT_OUT_JA]
    assert opted_out(svc)

    assert messages(text(body)) == []  # a second STOP changes nothing, so says nothing
    assert opted_out(svc)


@pytest.mark.parametrize("body", ["START", "start", "再開", "開始", "ＳＴＡＲＴ", "UNSTOP"])
def test_start_words_opt_in_and_confirm_only_when_it_changed(svc, text, body):
    assert messages(text(body)) == []  # not opted out: nothing to confirm
    assert not opted_out(svc)

    svc.redis.sadd(keys.sms_optout(), SENDER)
    assert messages(text(body)) == [OPT_IN_JA]
    assert not opted_out(svc)


def test_start_lifts_an_undeliverable_mark_and_confirms(svc, text):
    """A number that texts us takes messages, whatever a carrier said of it before."""
    undeliverable.mark(svc, SENDER, 30005)

    assert messages(text("START")) == [OPT_IN_JA]
    assert not svc.redis.exists(keys.sms_undeliverable(SENDER))
    assert messages(text("START")) == []  # nothing left to lift: nothing to confirm


def test_stop_leaves_an_undeliverable_mark(svc, text):
    undeliverable.mark(svc, SENDER, 30005)
    text("STOP")
    assert undeliverable.get(svc, SENDER) is not None


def test_english_customers_get_english_confirmations(svc, text):
    add_customer(svc, language="en")
    assert messages(text("STOP")) == [
        "You will no longer receive incident and recovery updates by SMS.\n"
        "Reply START to receive them again."]
    assert messages(text("START")) == [
        "Incident and recovery updates by SMS are on again.\nReply STOP to stop them."]


@pytest.mark.parametrize("body", ["stop please", "STOPP", "停止してください", "yes", "help",
                                  "こんにちは"])
def test_anything_else_gets_the_help_reply_and_opts_nobody_out(svc, text, body):
    assert messages(text(body)) == [HELP_JA]
    assert not opted_out(svc)


def test_the_help_reply_in_english_names_the_number_for_dialling_from_abroad(svc, text):
    add_customer(svc, language="en")
    assert messages(text("hello")) == [
        "For help, please call our support line at +81 50-1234-5678.\n"
        "Reply STATUS for the current status, STOP to stop updates, or START to resume them."]


def test_twilio_advanced_opt_out_replied_already(svc, text):
    """With Advanced Opt-Out Twilio sends its own confirmation and adds OptOutType; the
    suppression list follows it, and we do not send a second confirmation."""
    assert messages(text("配信をやめる", OptOutType="STOP")) == []
    assert opted_out(svc)
    assert messages(text("はじめる", OptOutType="START")) == []
    assert not opted_out(svc)
    assert messages(text("HELP", OptOutType="HELP")) == []


# --- status -----------------------------------------------------------------------------------


def test_status_without_incidents(svc, text):
    assert messages(text("状況")) == [NONE_JA]
    assert messages(text("status")) == [NONE_JA]


def test_status_lists_the_incidents_that_concern_the_sender(svc, text):
    add_customer(svc)
    put_incident(svc)
    put_incident(svc, "INC-20261123-0002", title="請求書の遅延", severity="critical",
                 status="identified", audience="affected",
                 scope={"services": ["billing"], "regions": [], "numbers": [SENDER]},
                 eta="2026-11-23T06:30:00Z", next_update_at="2026-11-23T01:30:00Z",
                 announcement={"ja": "請求書の発行が遅れております。"},
                 latest_update={"ja": "原因を特定し、修正を進めております。"})
    put_incident(svc, "INC-20261123-0003", title="東北地域の通信障害",
                 scope={"services": [], "regions": ["tohoku"], "numbers": []})

    assert messages(text("状況")) == [
        "【請求書の遅延】\n"
        "原因を特定し、修正を進めております。\n"
        "復旧見込み: 11月23日15時30分ごろ\n"
        "次回のお知らせ: 10時30分ごろ\n"
        "【メール障害】\n"
        "現在、メールサービスがご利用いただけない状況です。\n"
        "原因につきましては、現在確認中です。\n"
        "復旧見込み: 現在確認中です\n"
        "次回のお知らせ: 11時00分ごろ"]


def test_status_for_an_unknown_sender_only_shows_incidents_for_everyone(svc, text):
    put_incident(svc)
    assert messages(text("状況")) == [NONE_JA]

    put_incident(svc, "INC-20261123-0002", title="全サービス障害", audience="all",
                 status="monitoring", scope={"services": ["web"], "regions": [], "numbers": []})
    assert messages(text("状況")) == [
        "【全サービス障害】\n"
        "現在、メールサービスがご利用いただけない状況です。\n"
        "復旧作業を終え、現在状況を確認しております。\n"
        "復旧見込み: 現在確認中です\n"
        "次回のお知らせ: 11時00分ごろ"]


def test_status_reads_an_incident_and_its_numbers_as_of_one_moment(svc, monkeypatch):
    """A scope change landing while the reply is read: before it, the sender was listed by
    number; after it, the incident covers the sender's service. Either way it concerns
    them; only a document from before with the membership from after would say not."""
    add_customer(svc, services=["web"])
    put_incident(svc, scope={"services": ["mail"], "regions": [], "numbers": [SENDER]})
    real = svc.redis.execute_command
    landed = []

    def change_after_the_first_read(*args: Any, **options: Any) -> Any:
        out = real(*args, **options)
        if not landed and keys.incidents_active() in args:
            landed.append(args[0])
            put_incident(svc, scope={"services": ["web"], "regions": [], "numbers": []})
        return out

    monkeypatch.setattr(svc.redis, "execute_command", change_after_the_first_read)
    found = Customer(phone=SENDER, name="山田太郎", services=["web"], region="kanto",
                     language="ja", mobile=True)
    assert [doc["id"] for doc in inbound.concerning(svc, SENDER, found)] == ["INC-20261123-0001"]
    assert landed


def test_status_in_english(svc, text):
    add_customer(svc, language="en")
    put_incident(svc, eta="2026-11-23T06:30:00Z",
                 latest_update={"ja": "原因を特定しました。", "en": "We found the cause."})
    assert messages(text("STATUS")) == [
        "[メール障害]\n"
        "We found the cause.\n"
        "Expected recovery: Nov 23, 3:30 PM\n"
        "Next update: about 11:00 AM"]


def test_status_gives_the_date_of_a_next_update_on_another_day(svc, text, clock):
    put_incident(svc, next_update_at="2026-11-23T15:30:00Z")  # 0:30 tomorrow in Tokyo
    add_customer(svc)
    assert messages(text("状況"))[0].endswith("次回のお知らせ: 11月24日0時30分ごろ")
    add_customer(svc, language="en")
    assert messages(text("STATUS"))[0].endswith("Next update: about Nov 24, 12:30 AM")

    clock.move_to("2026-11-23T15:00:00Z")  # 0:00 on the 24th: now the same day
    assert messages(text("STATUS"))[0].endswith("Next update: about 12:30 AM")


def test_a_long_status_reply_is_cut_to_its_segment_budget(svc, text):
    add_customer(svc)
    put_incident(svc, announcement={"ja": "長い説明です。" * 140})
    put_incident(svc, "INC-20261123-0002", title="別の障害", severity="critical",
                 latest_update={"ja": "短い更新です。"})

    (reply,) = messages(text("状況"))

    counted = segments(reply)
    assert counted.encoding == "UCS-2"
    assert counted.count == inbound.REPLY_MAX_SEGMENTS
    assert reply.startswith("【別の障害】\n短い更新です。\n復旧見込み: 現在確認中です\n"
                            "次回のお知らせ: 11時00分ごろ\n【メール障害】\n長い説明です。")
    # The long text is cut, not the lines after it.
    assert reply.endswith("…\n原因につきましては、現在確認中です。\n"
                          "復旧見込み: 現在確認中です\n次回のお知らせ: 11時00分ごろ")
    assert reply.count("…") == 1


# --- one reply per MessageSid; no loops --------------------------------------------------------


def test_a_retried_webhook_replies_once_and_acts_once(svc, text, caplog, snapshot):
    sid = new_message_sid()
    assert messages(text("STOP", sid=sid)) == [OPT_OUT_JA]
    svc.redis.srem(keys.sms_optout(), SENDER)  # even if the state changed meanwhile
    before = snapshot()

    with caplog.at_level(logging.INFO, logger="ivr.inbound"):
        assert messages(text("STOP", sid=sid)) == []
    assert snapshot() == before
    assert "already handled" in caplog.text

    ttl = svc.redis.ttl(keys.sms_inbound(sid))
    assert keys.SMS_INBOUND_TTL - 5 <= ttl <= keys.SMS_INBOUND_TTL


@pytest.mark.parametrize("body", ["状況", "hello"])
def test_a_retried_status_or_help_message_is_answered_once(svc, text, body):
    sid = new_message_sid()
    assert len(messages(text(body, sid=sid))) == 1
    assert messages(text(body, sid=sid)) == []


@pytest.mark.parametrize(("what", "form"), [
    ("empty body", {"Body": ""}),
    ("blank body", {"Body": " \n\u3000"}),
    ("no body", {"Body": None}),
    ("our own number", {"From": OUR_NUMBER}),
    ("the number it was sent to", {"From": "+815099998888", "To": "+815099998888"}),
    ("no From", {"From": None}),
    ("withheld From", {"From": "anonymous"}),
    ("a short code", {"From": "12345"}),
    ("no MessageSid", {"MessageSid": None}),
    ("a garbled MessageSid", {"MessageSid": "SM" + "z" * 32}),
    ("a CallSid", {"MessageSid": "CA" + "0" * 32}),
    ("a huge Body", {"Body": "STOP" + "あ" * 1597}),
])
def test_nothing_to_act_on_gets_an_empty_answer_and_writes_nothing(svc, twilio_post, what,
                                                                   form, snapshot):
    fields = {"MessageSid": new_message_sid(), "From": SENDER, "To": OUR_NUMBER,
              "Body": "STOP"}
    fields.update(form)
    fields = {k: v for k, v in fields.items() if v is not None}
    before = snapshot()

    response = twilio_post("/sms/incoming", **fields)

    assert messages(response) == [], what
    assert snapshot() == before, what


def test_a_body_of_exactly_1600_characters_is_still_read(svc, text):
    assert messages(text("x" * 1600)) == [HELP_JA]


def test_wrong_method_is_refused(client, svc, snapshot):
    before = snapshot()
    assert client.get("/sms/incoming").status_code == 405
    assert client.put("/sms/incoming").status_code == 405
    assert snapshot() == before


def test_unsigned_requests_get_403_and_change_nothing(client, svc):
    form = {"MessageSid": new_message_sid(), "From": SENDER, "To": OUR_NUMBER, "Body": "STOP"}
    response = client.post("/sms/incoming", data=form, headers={
        "X-Twilio-Signature": sign("http://localhost/sms/incoming", form)})
    assert response.status_code == 403
    assert not opted_out(svc)
    assert svc.redis.dbsize() == 0


def test_the_log_masks_the_sender(svc, text, caplog):
    with caplog.at_level(logging.INFO):
        text("STOP")
        text("状況")
    assert "+81******5678" in caplog.text
    assert SENDER not in caplog.text


def test_without_redis_the_answer_is_an_empty_response(tmp_path, fake_twilio, content):
    config = make_config(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    services = build_services(config, **content)
    client = create_app(config, services=services).test_client()
    try:
        for body in ("STOP", "状況", "hello"):
            form = {"MessageSid": new_message_sid(), "From": SENDER, "To": OUR_NUMBER,
                    "Body": body}
            response = client.post("/sms/incoming", data=form, headers={
                "X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/sms/incoming", form)})
            root = parse_twiml(response)
            assert list(root) == []
    finally:
        services.redis.close()
        services.rq_redis.close()


def test_status_survives_a_far_future_eta_stored_before_the_api_refused_it(svc, text):
    """Issue 13: 9999-12-31T23:00Z in the store overflowed in Tokyo time and emptied the
    reply; now the ETA reads as unknown and the rest of the reply stands."""
    put_incident(svc, "INC-20261123-0002", title="全サービス障害", audience="all",
                 eta="9999-12-31T23:00:00Z")
    assert messages(text("状況")) == [
        "【全サービス障害】\n"
        "現在、メールサービスがご利用いただけない状況です。\n"
        "原因につきましては、現在確認中です。\n"
        "復旧見込み: 現在確認中です\n"
        "次回のお知らせ: 11時00分ごろ"]
