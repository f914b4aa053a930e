"""Caller IDs as Twilio sends them, and the strict normalisation behind them."""

from __future__ import annotations

import pytest

from ivr.phone import WITHHELD, caller_id, normalize


@pytest.mark.parametrize("raw", ["+819012345678", "+81312345678", "+14155550100",
                                 "+447911123456", "+8613812345678"])
def test_an_e164_caller_id_is_the_number_normalize_gives(raw):
    assert caller_id(raw) == normalize(raw) == raw


@pytest.mark.parametrize("raw", ["090-1234-5678", "09012345678", " +81 90 1234 5678 ",
                                 "sip:+819012345678@example.sip.twilio.com"])
def test_other_spellings_go_through_normalize(raw):
    assert caller_id(raw) == normalize(raw)


@pytest.mark.parametrize("raw", sorted(WITHHELD) + ["client:alice", "12345", "+0123456789",
                                                     "+81", "x" * 5000, None])
def test_withheld_and_non_numbers_have_no_caller_id(raw):
    assert caller_id(raw) is None


def test_a_well_shaped_number_the_plan_refuses_is_kept_as_an_unknown_caller():
    assert normalize("+81012345678") is None
    assert caller_id("+81012345678") == "+81012345678"
