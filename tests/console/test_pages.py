"""The call page with the SV's outcome, the operator's own escalations, the roster and the
customers page: the same checks and domain calls as the API, errors beside the field."""

from __future__ import annotations

import io

from ivr import customer, keys
from tests.api.test_escalate import waiting_caller
from tests.factories import add_customer, put_roster


def escalated_by_operator(admin, twilio_post, svc, op_login: str = "suzuki") -> str:
    """A waiting caller an operator handed up (as POST /api/calls/<sid>/escalate records it)."""
    from ivr import escalation

    put_roster(admin, ("伊藤主任", "+819011110002", "general", 2))
    sid = waiting_caller(twilio_post, svc)
    escalation.start(svc, sid, trigger="operator", reason="operator", raised_by=op_login,
                     note="返金のご相談")
    return sid


def test_the_sv_records_an_outcome_the_operator_then_sees(sv, op, admin, twilio_post, svc):
    sid = escalated_by_operator(admin, twilio_post, svc)
    mine = op.get("/console/me").get_data(as_text=True)
    assert f'data-call="{sid}"' in mine and "結果待ち" in mine
    page = sv.get(f"/console/calls/{sid}").get_data(as_text=True)
    assert 'id="outcome-form"' in page and "返金のご相談" in page
    response = sv.post(f"/console/calls/{sid}/outcome",
                       {"result": "callback", "note": "明日10時に折り返します"})
    assert response.status_code == 302
    assert svc.redis.hget(keys.call(sid), "esc_outcome_by") == "sato"
    mine = op.get("/console/me").get_data(as_text=True)
    row = mine.split(f'data-call="{sid}"')[1].split("</tr>")[0]
    assert "折り返し (sato)" in row and "明日10時に折り返します" in row


def test_an_outcome_without_a_result_is_400_beside_the_field(sv, admin, twilio_post, svc):
    sid = escalated_by_operator(admin, twilio_post, svc)
    response = sv.post(f"/console/calls/{sid}/outcome", {"result": "", "note": "x"})
    assert response.status_code == 400
    assert 'id="err-result"' in response.get_data(as_text=True)
    assert svc.redis.hget(keys.call(sid), "esc_outcome_result") is None


def test_an_operator_sees_only_their_own_escalations_and_no_outcome_form(op, admin,
                                                                          twilio_post, svc):
    mine = escalated_by_operator(admin, twilio_post, svc)
    other = escalated_by_operator(admin, twilio_post, svc, op_login="tanaka")
    page = op.get("/console/me").get_data(as_text=True)
    assert mine in page and other not in page
    assert 'id="outcome-form"' not in op.get(f"/console/calls/{mine}").get_data(as_text=True)


def test_the_roster_shows_who_each_reason_rings_and_an_admin_adds_one(console_as, admin, svc):
    put_roster(admin, ("伊藤主任", "+819011110002", "general", 2),
               ("渡辺課長", "+819011110003", "billing", 3))
    sv = console_as("supervisor")
    page = sv.get("/console/supervisors").get_data(as_text=True)
    assert 'data-rings="money">渡辺課長<' in page
    assert 'id="roster-form"' not in page  # roster.write is the admin's
    boss = console_as("admin")
    response = boss.post("/console/supervisors", {
        "name": "高橋", "phone": "09011110004", "skills": "technical", "level": "3",
        "order": "3", "on_call": "on"})
    assert response.status_code == 302, response.get_data(as_text=True)
    page = boss.get("/console/supervisors").get_data(as_text=True)
    assert 'data-rings="technical">高橋 → 渡辺課長<' not in page  # not billing
    assert 'data-rings="technical">高橋' in page


def test_a_bad_supervisor_is_400_beside_the_field_and_not_stored(console_as, svc):
    boss = console_as("admin")
    response = boss.post("/console/supervisors", {"name": "高橋", "phone": "abc",
                                                 "skills": "technical", "level": "3",
                                                 "order": "1"})
    assert response.status_code == 400
    assert 'id="err-phone"' in response.get_data(as_text=True)
    assert svc.redis.hlen(keys.supervisor_roster()) == 0


def test_looking_up_a_number_shows_its_opt_out_state(sv, svc):
    add_customer(svc, "+819012340000")
    svc.redis.sadd(keys.sms_optout(), "+819012340000")
    page = sv.get("/console/customers?phone=090-1234-0000").get_data(as_text=True)
    assert 'data-optout="out"' in page and "停止中" in page
    missing = sv.get("/console/customers?phone=09099999999").get_data(as_text=True)
    assert "data-customer-missing" in missing
    bad = sv.get("/console/customers?phone=abc")
    assert bad.status_code == 400 and 'id="err-phone"' in bad.get_data(as_text=True)


def test_a_csv_with_bad_rows_is_reported_per_row_and_nothing_is_written(sv, svc):
    data = ("phone,name,tier,services,language\n"
            "09012340001,山田,standard,mail,ja\n"
            "abc,佐藤,gold,mail,ja\n").encode()
    response = sv.post("/console/customers/import", {"csv": (io.BytesIO(data), "c.csv")},
                       content_type="multipart/form-data")
    assert response.status_code == 400
    table = response.get_data(as_text=True).split('id="row-errors"')[1]
    assert "<td>3</td><td>phone</td>" in table and "<td>3</td><td>tier</td>" in table
    assert customer.get(svc, "+819012340001")[0] is None


def test_a_good_csv_is_imported(sv, svc):
    data = "phone,name,services\n09012340002,山田,mail\n".encode()
    response = sv.post("/console/customers/import", {"csv": (io.BytesIO(data), "c.csv")},
                       content_type="multipart/form-data")
    assert response.status_code == 302
    assert customer.get(svc, "+819012340002")[0] is not None


def test_an_operator_escalates_from_the_call_page_and_finds_it_on_their_page(
        op, admin, twilio_post, svc, run_jobs, fake_twilio):
    put_roster(admin, ("渡辺課長", "+819011110003", "billing", 3))
    sid = waiting_caller(twilio_post, svc)
    page = op.get(f"/console/calls/{sid}").get_data(as_text=True)
    assert 'id="escalate-form"' in page and 'id="outcome-form"' not in page
    response = op.post(f"/console/calls/{sid}/escalate",
                       {"reason": "billing", "note": "返金額の判断をお願いします"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert svc.redis.hget(keys.call(sid), "esc_raised_by") == "suzuki"
    assert svc.redis.hget(keys.call(sid), "esc_reason") == "money"
    run_jobs()
    assert [leg.one("To") for leg in fake_twilio.calls_created()] == ["+819011110003"]
    assert f'data-call="{sid}"' in op.get("/console/me").get_data(as_text=True)
    again = op.post(f"/console/calls/{sid}/escalate", {"reason": "billing"})
    assert again.status_code == 409


def test_an_escalation_with_nobody_on_call_is_refused_and_nothing_starts(op, twilio_post, svc):
    sid = waiting_caller(twilio_post, svc)
    response = op.post(f"/console/calls/{sid}/escalate", {"reason": "technical"})
    assert response.status_code == 409
    assert svc.redis.hget(keys.call(sid), "esc_state") is None


def test_a_bad_reason_is_400_beside_the_field(op, twilio_post, svc):
    sid = waiting_caller(twilio_post, svc)
    response = op.post(f"/console/calls/{sid}/escalate", {"reason": "whim"})
    assert response.status_code == 400
    assert 'id="err-reason"' in response.get_data(as_text=True)
