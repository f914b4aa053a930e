"""Twenty incidents at once: the caller hears the most severe few in full, then how many
remain and a key for them, and /voice/incoming stays under Twilio's 64 kB (error 11750)."""

from __future__ import annotations

import shutil

import pytest

from ivr import create_app
from ivr.flows import load_flows
from tests.conftest import PUBLIC_BASE_URL, parse_twiml, sign
from tests.factories import declare, new_sid, put_roster, repeat_caller, says, verbs

TWILIO_MAX = 64 * 1024
CALLER = "+819012345678"
SEVERITIES = ["minor", "major", "critical"]


def declare_twenty(admin, clock, text: str) -> list[str]:
    """Twenty audience-all incidents, every third critical, a second apart (equal severities
    are heard oldest first); their ids as declared."""
    ids = []
    for i in range(20):
        clock.tick(1)
        doc = declare(admin, title=f"障害{i}", audience="all", severity=SEVERITIES[i % 3],
                      notify=False, announcement={"ja": f"{i:02d}" + text[2:]})
        ids.append(doc["id"])
    return ids


def spoken_numbers(root) -> list[str]:
    """The two-digit number each announcement heard in full starts with."""
    return [s[:2] for s in says(root) if s[:2].isdigit()]


def test_twenty_long_announcements_stay_under_the_limit_and_page(admin, twilio_post, clock):
    declare_twenty(admin, clock, "あ" * 1000)
    sid = new_sid()
    response = twilio_post("/voice/incoming", CallSid=sid, From=CALLER)
    assert len(response.get_data()) < TWILIO_MAX
    root = parse_twiml(response)
    assert verbs(root) == ["Say", "Say", "Say", "Say", "Say", "Gather", "Redirect"]
    assert spoken_numbers(root) == ["02", "05", "08"]  # the critical ones, oldest first
    assert root[4].text == ("他に17件の障害が発生しております。"
                            "続けてお聞きになる場合は8を押してください。")
    action = root.find("Gather").attrib["action"]
    assert action == f"{PUBLIC_BASE_URL}/voice/gather?heard=3"

    more = parse_twiml(twilio_post("/voice/gather?heard=3", CallSid=sid, Digits="8"))
    assert spoken_numbers(more) == ["11", "14", "17"]
    assert "他に14件の障害が発生しております。" in says(more)[-2]
    assert more.find("Gather").attrib["action"] == \
        f"{PUBLIC_BASE_URL}/voice/gather?turn=1&heard=6"

    last = parse_twiml(twilio_post("/voice/gather?turn=5&heard=18", CallSid=sid, Digits="8"))
    assert spoken_numbers(last) == ["15", "18"]  # minor, the last two
    assert not any("他に" in s for s in says(last))
    assert last.find("Gather").attrib["action"] == f"{PUBLIC_BASE_URL}/voice/gather?turn=6"


def test_the_more_key_without_heard_is_an_ordinary_key(admin, twilio_post, clock):
    declare_twenty(admin, clock, "あ" * 50)
    sid = new_sid()
    twilio_post("/voice/incoming", CallSid=sid, From=CALLER)
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid, Digits="8"))
    assert verbs(root) == ["Say", "Enqueue"]


def test_a_repeat_caller_hears_the_cap_without_a_key_they_cannot_press(admin, twilio_post,
                                                                       clock):
    put_roster(admin, ("高橋SV", "+819011110001", "general", 3))
    declare_twenty(admin, clock, "あ" * 1000)
    sid = repeat_caller(twilio_post, clock, CALLER)
    response = twilio_post("/voice/incoming", CallSid=sid, From=CALLER)
    assert len(response.get_data()) < TWILIO_MAX
    root = parse_twiml(response)
    assert "他に17件の障害が発生しております。" in says(root)
    assert root.find("Gather") is None


@pytest.mark.parametrize("text", ["&" * 1000, "<" * 1000, "😀" * 1000])
def test_the_worst_case_at_the_largest_cap_is_still_under_the_limit(
        admin, config, svc, clock, tmp_path, text):
    """Five in full (flows' maximum), each 1,000 characters that escape or encode longest."""
    flows = tmp_path / "flows"
    shutil.copytree(config["IVR_FLOWS_DIR"], flows)
    path = flows / "call.yaml"
    path.write_text(path.read_text().replace("in_full: 3", "in_full: 5"))
    svc.flows = load_flows(flows)
    declare_twenty(admin, clock, text)
    app = create_app({**config, "IVR_FLOWS_DIR": str(flows)}, services=svc)
    form = {"CallSid": new_sid(), "From": CALLER}
    response = app.test_client().post("/voice/incoming", data=form, headers={
        "X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/voice/incoming", form)})
    assert len(response.get_data()) < TWILIO_MAX
    assert len(spoken_numbers(parse_twiml(response))) == 5
