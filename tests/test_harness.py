"""The test harness itself: the snapshot fixture sees every write, and the TwiML check
refuses what Twilio's schema refuses (tests/twiml.py), forgiving only the schema's gaps."""

from __future__ import annotations

import pytest

from tests import twiml


def test_the_snapshot_sees_a_write_to_either_redis_and_a_new_expiry(svc, snapshot):
    svc.redis.set("{ivr}:probe", "1")
    svc.rq_redis.set("rq:probe", "1")
    before = snapshot()
    assert before != {}

    svc.redis.set("{ivr}:probe", "2")
    assert snapshot() != before
    svc.redis.set("{ivr}:probe", "1")
    assert snapshot() == before

    svc.rq_redis.set("rq:other", "1")  # the queue's Redis
    assert snapshot() != before
    svc.rq_redis.delete("rq:other")
    assert snapshot() == before

    svc.redis.expire("{ivr}:probe", 60)
    assert snapshot() != before


def doc(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'.encode()


@pytest.mark.parametrize("body", [
    '<Say voice="Polly.Mizuki" language="ja-JP">こんにちは</Say>',
    '<Say voice="Google.ja-JP-Standard-A" language="ja-JP">こんにちは</Say>',
    '<Gather input="dtmf speech" action="/voice/gather" numDigits="1">'
    '<Say voice="Google.en-US-Standard-C">Hello</Say></Gather>',
    "<Message>ご迷惑をおかけしております。</Message>",
    "",
])
def test_valid_twiml_passes(body):
    twiml.validate(doc(body))


@pytest.mark.parametrize("body", [
    "<Sya>typo</Sya>",  # no such verb
    '<Say voice="Polly.Mizuki-Neural">x</Say>',  # not a gap we forgive
    '<Say voice="Google.ja-JP-Standard-A" loop="often">x</Say>',  # the voice is not all
    '<Say voice="Googel.ja-JP-Standard-A">x</Say>',
    '<Dial timeout="soon">+81312345678</Dial>',
    '<Message>a</Message><Say>b</Say>',  # Messaging and voice mixed
    '<Message bogus="1">a</Message>',
    "<Message><Say>a</Say></Message>",
    "<Message></Message>",
])
def test_invalid_twiml_fails(body):
    with pytest.raises(twiml.InvalidTwiML):
        twiml.validate(doc(body))


def test_without_the_schema_folder_the_suite_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setattr(twiml, "XSD", tmp_path / "missing.xsd")
    twiml.schema.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="shared/twiml-xsd"):
            twiml.schema()
    finally:
        monkeypatch.undo()
        twiml.schema.cache_clear()
        twiml.schema()
