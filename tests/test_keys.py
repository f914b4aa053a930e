"""ivr/keys.py: every key has the ivr:<noun>:<id>[:<facet>] shape and a documented type."""

from __future__ import annotations

import inspect
import re
import types

import pytest

from ivr import keys

KEY_SHAPE = re.compile(r"^\{ivr\}(:[^:\s{}]+)+$")
REDIS_TYPE = re.compile(r"^(String|Hash|Set|Sorted set|List)\b")
SAMPLES = {
    "incident_id": "INC-20261123-0001",
    "phone": "+819012345678",
    "call_sid": "CA" + "0123456789abcdef" * 2,
    "agent_call_sid": "CA" + "fedcba9876543210" * 2,
    "service": "mail",
    "region": "mail",
    "token_hash": "tokenhash",
    "attempt": 2,
    "seq": 3,
    "due": 1795395600,
    "message_sid": "SM" + "0123456789abcdef" * 2,
    "name": "operator-1",
    "token_id": "t-0123456789abcdef",
    "person_id": "p-0123456789abcdef",
    "login": "yamada",
    "kind": "login",
    "subject": "0123456789abcdef",
    "window": 1995395,
}


def sample_key(fn: types.FunctionType) -> str:
    params = inspect.signature(fn).parameters
    unknown = [name for name in params if name not in SAMPLES]
    assert not unknown, f"{fn.__name__} takes {unknown}: add a sample id to SAMPLES"
    return fn(**{name: SAMPLES[name] for name in params})


def module_key_functions() -> list[str]:
    return sorted(name for name, obj in vars(keys).items()
                  if inspect.isfunction(obj) and obj.__module__ == keys.__name__
                  and not name.startswith("_"))


def test_all_lists_every_key_function_once():
    assert len(keys.ALL) == len(set(keys.ALL))
    assert sorted(fn.__name__ for fn in keys.ALL) == module_key_functions()
    assert len(keys.ALL) >= 17


@pytest.mark.parametrize("fn", keys.ALL, ids=lambda fn: fn.__name__)
def test_key_has_the_ivr_shape(fn):
    key = sample_key(fn)
    assert isinstance(key, str)
    assert KEY_SHAPE.match(key), key
    assert key.startswith(keys.PREFIX + ":")


@pytest.mark.parametrize("fn", keys.ALL, ids=lambda fn: fn.__name__)
def test_key_embeds_its_ids(fn):
    params = inspect.signature(fn).parameters
    key = sample_key(fn)
    for name in params:
        assert f":{SAMPLES[name]}" in key, (name, key)


@pytest.mark.parametrize("fn", keys.ALL, ids=lambda fn: fn.__name__)
def test_docstring_names_a_redis_type_and_the_ttl(fn):
    doc = inspect.getdoc(fn) or ""
    assert REDIS_TYPE.match(doc), f"{fn.__name__}: {doc!r}"
    assert "TTL" in doc, f"{fn.__name__} does not say its TTL (or 'No TTL'): {doc!r}"


def test_no_two_functions_give_the_same_key():
    produced = {fn.__name__: sample_key(fn) for fn in keys.ALL}
    assert len(set(produced.values())) == len(produced), produced


def test_ttls_are_positive_whole_seconds():
    assert isinstance(keys.CALL_TTL, int) and keys.CALL_TTL > 0
    assert isinstance(keys.AGENT_ASSIGNMENT_TTL, int) and keys.AGENT_ASSIGNMENT_TTL > 0
