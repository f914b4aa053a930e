"""Redis Cluster: every key shares one slot, and the suite's Redis enforces it.

tests/conftest.py runs the app's Redis in cluster mode for the whole suite, so every test
that runs a Lua script, a MULTI or a multi-key command also proves it would be routed to one
node. These tests check that the guard is really on, and the layout that makes it pass.
"""

from __future__ import annotations

import inspect

import pytest
import redis as redis_lib

from ivr import keys


def sample_keys() -> list[str]:
    out = []
    for fn in keys.ALL:
        params = inspect.signature(fn).parameters
        out.append(fn(**{name: "+81312345678" if name == "phone" else "X1"
                         for name in params}))
    return out


def test_the_suites_redis_refuses_cross_slot_scripts_as_a_cluster_would(redis):
    assert redis.info("cluster")["cluster_enabled"] == 1
    with pytest.raises(redis_lib.ResponseError, match="hash to the same slot"):
        redis.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, keys.incidents_active(),
                   "a-key-of-another-slot")
    with pytest.raises(redis_lib.RedisError):
        redis.get("a-key-of-another-slot")
    with pytest.raises(redis_lib.ResponseError, match="non local key"):
        redis.eval("return redis.call('GET', 'a-key-of-another-slot')", 1,
                   keys.incidents_active())


def test_every_key_of_the_service_hashes_to_one_slot(redis):
    slots = {key: redis.cluster("KEYSLOT", key) for key in sample_keys()}
    assert len(set(slots.values())) == 1, slots


def test_the_job_queue_lives_on_a_redis_of_its_own(svc):
    assert svc.rq_redis.info("cluster")["cluster_enabled"] == 0
    assert svc.config["IVR_QUEUE_REDIS_URL"] != svc.config["REDIS_URL"]
