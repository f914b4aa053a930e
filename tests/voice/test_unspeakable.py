"""Whatever Redis holds, a spoken answer is XML 1.0 and valid TwiML: text stored before the
API refused such characters (or from a customer CSV) loses what XML forbids, nothing else.
parse_twiml parses each answer (well-formed) and checks it against Twilio's schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from ivr import keys
from ivr.voice.twiml import speakable
from tests.conftest import PUBLIC_BASE_URL, parse_twiml
from tests.factories import add_customer, declare, new_sid, put_roster, repeat_caller

# NUL, ESC, form feed, the two BMP noncharacters, one of U+FDD0-U+FDEF, a plane-1
# noncharacter; a lone surrogate where the storage can hold one (inside JSON, escaped).
BAD = "\x00\x1b\x0c\ufffe\uffff\ufdd0\U0001fffe"
SURROGATE = "\ud800"
CALLER = "+819012345678"


def spoken(root: ET.Element) -> str:
    return "".join(el.text or "" for el in root.iter("Say"))


def test_speakable_drops_only_what_xml_forbids():
    kept = "タブ\tと改行\nと復帰\r、DEL\x7f、絵文字😀、私用領域\ue000、U+FFFD\ufffd"
    assert speakable("メ" + BAD + SURROGATE + "ール" + kept) == "メール" + kept
    for ch in (BAD + SURROGATE):
        assert speakable(ch) == ""


def test_incoming_with_a_stored_announcement_holding_controls(admin, twilio_post, svc):
    doc = declare(admin, audience="all")
    stored = json.loads(svc.redis.hget(keys.incidents_active(), doc["id"]))
    stored["announcement"]["ja"] = f"メール{BAD}障害です。"  # (a lone surrogate: the API
    # never stored one, it failed on it; the caller script's cjson refuses to read one)
    svc.redis.hset(keys.incidents_active(), doc["id"], json.dumps(stored, ensure_ascii=False))

    root = parse_twiml(twilio_post("/voice/incoming", CallSid=new_sid(), From=CALLER,
                                           To="+815012345678"))
    assert "メール障害です。" in spoken(root)


def test_agent_line_with_a_customer_name_holding_controls(twilio_post, svc):
    add_customer(svc, CALLER, name=f"山田{BAD}太郎")
    sid = new_sid()
    twilio_post("/voice/incoming", CallSid=sid, From=CALLER, To="+815012345678")
    twilio_post("/voice/gather", CallSid=sid, Digits="1")

    root = parse_twiml(twilio_post("/voice/agent-line", CallSid=new_sid(),
                                           From="+81312345678"))
    assert spoken(root).startswith("山田太郎様からのお電話です。")
    assert root.find("Dial/Conference").text == sid


def test_sv_whisper_with_an_escalation_note_holding_controls(admin, twilio_post, svc, clock,
                                                             run_jobs):
    put_roster(admin, ("高橋SV", "+819011110001", "general", 3))
    add_customer(svc, CALLER, name=f"山田{BAD}太郎")
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    context = json.loads(svc.redis.hget(keys.call(sid), "context"))
    context["why"]["note"] = f"二回目{BAD}の{SURROGATE}ご連絡"
    svc.redis.hset(keys.call(sid), "context", json.dumps(context))  # ASCII: \\ud800 kept

    root = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0",
                                           CallSid="CA" + "5" * 32))
    whisper = spoken(root)
    assert "山田太郎様" in whisper
    assert "オペレーターからのメモです。二回目のご連絡" in whisper
    assert root.find("Gather").attrib["action"] == \
        f"{PUBLIC_BASE_URL}/voice/sv-connect?call={sid}&attempt=0"
