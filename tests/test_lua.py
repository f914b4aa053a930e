"""Every script in ivr/lua/: its contract is written at its top, the code runs it by name,
and it runs on the test Redis (a Cluster node serving only the `{ivr}` slot, so a key a
script builds outside that slot fails here as it would in production)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr import call, incident, keys, lua
from ivr.services import Services, field_args

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for d in ("ivr", "worker") for p in (ROOT / d).rglob("*.py")]
NOW, EPOCH = "2026-11-23T01:00:00+00:00", 1795395600


def test_every_script_is_shipped_and_read_through_the_loader():
    on_disk = sorted(p.stem for p in (ROOT / "ivr" / "lua").glob("*.lua"))
    assert lua.names() == on_disk
    assert set(SMOKE) == set(on_disk)  # every script has a smoke run below


@pytest.mark.parametrize("name", lua.names())
def test_each_script_states_its_contract_at_its_top(name):
    text = lua.source(name)
    header = text[:text.index("\n\n", text.index("\n--\n"))]  # the first comment block
    assert header.startswith(f"-- {name}: ")
    assert all(line.startswith("--") for line in header.splitlines())
    body = text[len(header):]
    for word in ("KEYS", "ARGV"):
        if f"{word}[" in body:
            assert f"{word}[" in header, f"{name}.lua uses {word} without stating them"
    assert "Returns" in header


@pytest.mark.parametrize("name", lua.names())
def test_each_script_is_run_by_the_code_by_name(name):
    called = re.compile(r'(?:script|register)\((?:[^()]*,\s*)?"' + re.escape(name) + r'"\)')
    users = [p for p in CODE if called.search(p.read_text(encoding="utf-8"))]
    assert users, f"ivr/lua/{name}.lua is run by no module"


def test_no_python_module_holds_lua():
    holders = {str(p.relative_to(ROOT)) for p in CODE
               if "redis.call(" in p.read_text(encoding="utf-8")}
    assert holders == set()


def test_the_constants_scripts_share_with_python_are_equal():
    def local(name: str, script: str) -> str:
        found = re.search(rf"^local [^\n]*\b{name}\b[^\n]*$", lua.source(script), re.M)
        assert found, f"{name} in {script}.lua"
        names, values = found.group(0)[len("local "):].split(" = ", 1)
        return dict(zip([n.strip() for n in names.split(",")], split_top(values),
                        strict=True))[name]

    for script in ("incoming", "enqueue"):
        assert int(local("BAND_SCALE", script)) == call.BAND_SCALE
    assert [int(local(f"BAND_{b}", "incoming")) for b in ("PRIORITY", "AFFECTED", "OTHER")] \
        == [call.BAND_PRIORITY, call.BAND_AFFECTED, call.BAND_OTHER]
    assert local("RANK", "incoming") == "{" + ", ".join(
        f"{s} = {i}" for i, s in enumerate(incident.SEVERITIES, 1)) + "}"
    assert local("METRIC_TAGS", "incoming") == "{" + ", ".join(
        f"'{t}'" for t in call.METRIC_TAGS) + "}"


def split_top(values: str) -> list[str]:
    """`a, {b, c}, d` -> ['a', '{b, c}', 'd']: a Lua list of values split at top-level commas."""
    out, depth, part = [], 0, ""
    for ch in values:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            out.append(part.strip())
            part = ""
        else:
            part += ch
    return [*out, part.strip()]


def test_services_run_each_script_by_its_sha(svc):
    first = svc.script("mark_call")
    assert svc.script("mark_call") is first  # loaded once per Services
    svc.redis.script_flush()  # a restarted Redis has forgotten it: loaded again
    svc.redis.hset(keys.call("CA1"), "state", "greeting")
    assert first(keys=[keys.call("CA1")], args=["state", "queued"]) == 1
    assert svc.redis.hget(keys.call("CA1"), "state") == "queued"


def test_a_script_runs_as_it_stands_in_its_file(redis_server, svc):
    """What Redis runs is the file itself: EVAL of its text gives what the code gets."""
    svc.redis.hset(keys.call("CA1"), "state", "greeting")
    text = (ROOT / "ivr" / "lua" / "mark_call.lua").read_text(encoding="utf-8")
    assert svc.redis.eval(text, 1, keys.call("CA1"), "state", "queued") == 1
    assert svc.redis.eval(text, 1, keys.call("CA2"), "state", "queued") == 0


# One realistic call per script: prepare Redis, the keys and args the code passes, the
# reply (or a test of it), and what Redis then holds (a read, and what it must give).
Smoke = tuple[Callable[[Services], object], list[str], list[Any], Any,
              Callable[[Any], Any], Any]
SID, PHONE = "CA1", "+819012345678"
CLAIM = keys.sms_claim("42", 1, PHONE)
DOC = json.dumps({"id": "42", "severity": "major", "created_at": NOW, "audience": "affected",
                  "status": "investigating", "scope": {"services": ["mail"]}})


def _call_record(svc: Services, **fields: str) -> None:
    svc.redis.hset(keys.call(SID), mapping={
        "call_sid": SID, "from": PHONE, "band": "2", "lang": "ja", "tags": "[]",
        "incidents": '["42"]', "state": "greeting", **fields})
    svc.redis.expire(keys.call(SID), keys.CALL_TTL)


def _incident(svc: Services) -> None:
    svc.redis.hset(keys.incidents_active(), "42", DOC)
    svc.redis.hset(keys.customer(PHONE), mapping={
        "phone": PHONE, "name": "山田", "tier": "vip", "services": '["mail"]',
        "region": "kanto", "language": "ja"})


SMOKE: dict[str, Smoke] = {
    "incoming": (
        _incident,
        [keys.customer(PHONE), keys.incidents_active(), keys.caller_calls(PHONE),
         keys.call(SID), keys.calls_recent(), keys.calls_active(),
         keys.metrics_calls_by_kinds(), keys.waiting(), keys.calls_swept()],
        [SID, EPOCH, PHONE, "+815012345678", NOW, 3600, 3, "ja", keys.CALL_TTL,
         keys.RECENT_CALLS_MAX, call.STALE_AFTER, keys.incident_numbers("*"),
         keys.incident_counters("*")],
        [1, "ja", '["affected", "vip", "incident:42"]', '["42"]', ["42", DOC]],
        lambda r: (r.hmget(keys.call(SID), "band", "call_number", "customer_name"),
                   r.hgetall(keys.incident_counters("42")),
                   r.hgetall(keys.metrics_calls_by_kinds()), 0 < r.ttl(keys.call(SID))),
        (["1", "1", "山田"], {"calls": "1", "affected_calls": "1"}, {"affected,vip": "1"},
         True)),
    "enqueue": (
        _call_record, [keys.call(SID), keys.waiting()],
        [SID, EPOCH * 1000, 1, "transcript", "繋がらない"], [2, "ja", "[]"],
        lambda r: (r.zscore(keys.waiting(), SID), r.hget(keys.call(SID), "transcript")),
        (2 * call.BAND_SCALE + EPOCH * 1000, "繋がらない")),
    "next_caller": (
        lambda svc: (_call_record(svc, state="queued"),
                     svc.redis.zadd(keys.waiting(), {SID: 1})),
        [keys.waiting(), keys.agent_assignment("CAop")],
        ["CAop", keys.AGENT_ASSIGNMENT_TTL, keys.call("*")], SID,
        lambda r: (r.hget(keys.call(SID), "state"), r.get(keys.agent_assignment("CAop"))),
        ("connecting", SID)),
    "close_call": (
        lambda svc: (_call_record(svc, esc_state="ringing", esc_reason="manager"),
                     svc.redis.zadd(keys.calls_active(), {SID: EPOCH})),
        [keys.call(SID), keys.calls_active(), keys.waiting(), keys.metrics_escalations()],
        [SID, 1, "status", "completed"], 1,
        lambda r: (r.hmget(keys.call(SID), "state", "esc_state"), r.zcard(keys.calls_active()),
                   r.hgetall(keys.metrics_escalations())),
        (["completed", "abandoned"], 0, {"manager|abandoned": "1"})),
    "mark_call": (
        _call_record, [keys.call(SID)], ["agent_call_sid", "CA2"], 1,
        lambda r: r.hget(keys.call(SID), "agent_call_sid"), "CA2"),
    "escalation_start": (
        lambda svc: (_call_record(svc, esc_state="exhausted", esc_attempt="2",
                                  esc_sv_name="佐藤"),
                     svc.redis.zadd(keys.waiting(), {SID: 1})),
        [keys.call(SID), keys.escalations_raised_by("op1"), keys.metrics_escalations(),
         keys.metrics_calls_by_kinds(), keys.waiting()],
        [EPOCH, keys.CALL_TTL, "op1", "1", keys.incident_counters("*"), 2, "esc_state",
         "dialing", "esc_reason", "manager", "esc_sv_name"], [1, "dialing", 3],
        lambda r: (r.hmget(keys.call(SID), "esc_first", "esc_sv_name"),
                   r.hget(keys.incident_counters("42"), "escalations"),
                   r.zscore(keys.escalations_raised_by("op1"), SID), r.zcard(keys.waiting())),
        (["3", None], "1", EPOCH, 0)),
    "escalation_advance": (
        lambda svc: _call_record(svc, esc_state="ringing", esc_attempt="0", esc_reason="manager"),
        [keys.call(SID), keys.escalation_log(SID), keys.metrics_escalation_attempts()],
        ["0", "failed:21211", NOW], 1,
        lambda r: (r.hgetall(keys.metrics_escalation_attempts()),
                   json.loads(r.lindex(keys.escalation_log(SID), 0))["result"]),
        ({"manager|failed": "1"}, "failed:21211")),
    "escalation_accept": (
        lambda svc: _call_record(svc, esc_state="ringing", esc_attempt="0",
                                 esc_started_epoch=str(EPOCH - 30)),
        [keys.call(SID), keys.escalation_log(SID), keys.metrics_escalations()],
        ["0", NOW, EPOCH, "CAsv"], 1,
        lambda r: r.hmget(keys.call(SID), "esc_state", "esc_wait_seconds", "esc_accepted_leg"),
        ["accepted", "30", "CAsv"]),
    "escalation_answered": (
        lambda svc: _call_record(svc, esc_state="ringing", esc_attempt="1"),
        [keys.call(SID)], ["1", EPOCH], 1,
        lambda r: r.hmget(keys.call(SID), "esc_answered_attempt", "esc_answered_epoch"),
        ["1", str(EPOCH)]),
    "escalation_set_if": (
        lambda svc: _call_record(svc, esc_state="dialing", esc_reason="repeat"),
        [keys.call(SID), keys.metrics_escalations(), keys.metrics_calls_by_kinds()],
        [2, "dialing", "ringing", "esc_state", "exhausted", "band", "0"], 1,
        lambda r: (r.hgetall(keys.metrics_escalations()),
                   r.hgetall(keys.metrics_calls_by_kinds())),
        ({"repeat|exhausted": "1"}, {"priority": "1"})),
    "sms_status": (
        lambda svc: svc.redis.hset(keys.sms_message("SM1"), mapping={
            "incident_id": "42", "seq": "1", "to": PHONE, "status": "sent"}),
        [keys.sms_message("SM1"), keys.incident_counters("42"), keys.metrics_sms(),
         keys.sms_fanout("42", 1)],
        ["undelivered", "30003", "sms_failed", "1", NOW, 60], [1, "undelivered", 1, 1, 1],
        lambda r: (r.hmget(keys.sms_message("SM1"), "status", "error_code", "resend"),
                   r.hgetall(keys.metrics_sms()), r.hgetall(keys.sms_fanout("42", 1)),
                   0 < r.ttl(keys.sms_fanout("42", 1)) <= 60),
        (["undelivered", "30003", NOW], {"failed": "1"}, {"failed": "1"}, True)),
    "concerning": (
        lambda svc: (_incident(svc), svc.redis.sadd(keys.incident_numbers("42"), PHONE)),
        [keys.incidents_active()], [PHONE, keys.incident_numbers("*")], [["42", DOC], ["42"]],
        lambda r: r.hlen(keys.incidents_active()), 1),
    "sms_rate": (
        lambda svc: None, [keys.sms_rate()], [2, 10, 1_000_000, "ab12"],
        lambda reply: reply[:2] == [1, 0] and reply[2] > EPOCH * 10**6,
        lambda r: [m.split(":")[1:] for m in r.zrange(keys.sms_rate(), 0, -1)], [["2", "ab12"]]),
    "sms_claim_swap": (
        lambda svc: svc.redis.set(CLAIM, "pending:1:aa"),
        [CLAIM], ["pending:1:aa", "pending:2:bb", 60], 1,
        lambda r: (r.get(CLAIM), 0 < r.ttl(CLAIM) <= 60), ("pending:2:bb", True)),
    "sms_record": (
        lambda svc: svc.redis.set(CLAIM, "pending:1:aa"),
        [CLAIM, keys.sms_message("SM1"), keys.incident_counters("42"), keys.metrics_sms(),
         keys.sms_fanout("42", 1)],
        ["sent", "pending:1:aa", "SM1", 60,
         *field_args({"incident_id": "42", "seq": "1", "status": "queued"})], 1,
        lambda r: (r.get(CLAIM), r.hget(keys.sms_message("SM1"), "status"),
                   r.hget(keys.incident_counters("42"), "sms_sent"), r.hgetall(keys.metrics_sms()),
                   r.hgetall(keys.sms_fanout("42", 1)), 0 < r.ttl(keys.sms_fanout("42", 1)) <= 60),
        ("SM1", "queued", "1", {"sent": "1"}, {"sent": "1"}, True)),
    "sms_key_toggle": (
        lambda svc: svc.redis.hset(keys.call("CA1"), "state", "queued"),
        [keys.call("CA1"), keys.sms_optout()], [2, "+819012345678"], [1, 1],
        lambda r: (r.sismember(keys.sms_optout(), "+819012345678"),
                   r.hget(keys.call("CA1"), "sms_key_turn")),
        (1, "2")),
    "sms_release": (
        lambda svc: svc.redis.set(CLAIM, "pending:1:aa"),
        [CLAIM, keys.incident_counters("42"), keys.metrics_sms(), keys.sms_fanout("42", 1)],
        ["pending:1:aa", "failed:21211", 60], 1,
        lambda r: (r.get(CLAIM), r.hgetall(keys.metrics_sms()),
                   r.hgetall(keys.sms_fanout("42", 1))),
        ("failed:21211", {"failed": "1"}, {"failed": "1"})),
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_each_script_runs_on_redis(svc, name):
    prepare, script_keys, args, reply, read, held = SMOKE[name]
    prepare(svc)
    got = svc.script(name)(keys=script_keys, args=args)
    assert reply(got) if callable(reply) else got == reply
    assert read(svc.redis) == held


def test_sms_record_settles_a_stale_claim_once(svc):
    """The 'settle' mode of sms_record.lua: only over the stale value, the record once."""
    record = ["settle", "pending:1:aa", "SM1", 60, *field_args({"status": "queued"})]
    claim_keys = [CLAIM, keys.sms_message("SM1"), keys.incident_counters("42"),
                  keys.metrics_sms()]
    svc.redis.set(CLAIM, "pending:1:aa")
    assert svc.script("sms_record")(keys=claim_keys, args=record) == 1
    assert svc.script("sms_record")(keys=claim_keys, args=record) == 0  # claim holds SM1 now
    assert (svc.redis.get(CLAIM), svc.redis.hgetall(keys.metrics_sms())) == ("SM1", {"sent": "1"})
