"""ivr/ratelimit.py: the global SMS rate in segments, a sliding-window log decided by one Lua
script on Redis time.

Expected waits are computed from the server times the script itself reports and the scores
the test put in the log, so they are exact (freezegun does not reach Redis TIME). The one
test that has to take real time runs two worker processes for 3 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis as redis_lib

from ivr import keys
from ivr.ratelimit import Attempt, RateLimitTimeout, SegmentRate, most_in_window

ROOT = Path(__file__).resolve().parents[2]
US = 1_000_000


def server_us(redis) -> int:
    seconds, micros = redis.time()
    return seconds * US + micros


def log_grants(redis, *grants: tuple[int, int]) -> None:
    """Put grants (time_us, segments) in the log as the script would have."""
    for i, (t, n) in enumerate(grants):
        redis.zadd(keys.sms_rate(), {f"{t}:{n}:{i:016x}": t})


def logged(redis) -> list[tuple[int, int]]:
    """The log as (time_us, segments), oldest first, checking each member's shape."""
    out = []
    for member, score in redis.zrange(keys.sms_rate(), 0, -1, withscores=True):
        t, n, tag = member.split(":")
        assert int(t) == score and len(tag) == 16
        out.append((int(t), int(n)))
    return out


def test_a_grant_is_logged_in_the_sorted_set_with_its_server_time(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10)

    first = rate.attempt(2)

    assert first == Attempt(0.0, first.server_us)
    assert first.granted
    assert redis.type(keys.sms_rate()) == "zset"
    assert logged(redis) == [(first.server_us, 2)]
    assert 990 < redis.pttl(keys.sms_rate()) <= 1001  # gone when the grant leaves the window


def test_the_window_fills_to_the_limit_then_waits_for_the_oldest_grant(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10)
    grants = [rate.attempt(1) for _ in range(10)]
    assert all(g.granted for g in grants)

    refused = rate.attempt(1)

    assert not refused.granted
    assert refused.wait == (grants[0].server_us + US - refused.server_us) / US
    assert 0.9 < refused.wait <= 1.0
    assert len(logged(redis)) == 10  # nothing reserved
    assert rate.try_acquire(1) > 0.0
    assert len(logged(redis)) == 10


def test_the_wait_lasts_until_enough_old_grants_have_left(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10)
    now = server_us(redis)
    log_grants(redis, (now - 900_000, 3), (now - 500_000, 2), (now - 100_000, 5))

    # 10 + 4: the 3 and the 2 must leave (5 + 4 <= 10); 10 + 1: the 3 is enough.
    four, one, six = rate.attempt(4), rate.attempt(1), rate.attempt(6)

    assert four.wait == (now + 500_000 - four.server_us) / US
    assert one.wait == (now + 100_000 - one.server_us) / US
    assert six.wait == (now + 900_000 - six.server_us) / US  # all of them
    assert len(logged(redis)) == 3


def test_room_left_in_the_window_is_used_at_once(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10)
    now = server_us(redis)
    log_grants(redis, (now - 900_000, 4), (now - 500_000, 4))

    double = rate.attempt(2)
    single = rate.attempt(1)

    assert double.granted
    assert single.wait == (now + 100_000 - single.server_us) / US


def test_grants_a_second_old_are_dropped(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10)
    now = server_us(redis)
    log_grants(redis, (now - 1_500_000, 10), (now - US, 10))  # both out of the window

    granted = rate.attempt(10)

    assert granted.granted
    assert logged(redis) == [(granted.server_us, 10)]


def test_a_message_over_the_limit_goes_only_into_an_empty_window(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 3)
    small = rate.attempt(1)

    big = rate.attempt(5)
    assert big.wait == (small.server_us + US - big.server_us) / US

    redis.delete(keys.sms_rate())
    big = rate.attempt(5)
    after = rate.attempt(1)
    assert big.granted
    assert after.wait == (big.server_us + US - after.server_us) / US


def test_a_fractional_rate_counts_whole_segments(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 2.5)
    assert (rate.capacity, rate.window_us) == (2, US)
    first = rate.attempt(1)
    assert rate.attempt(1).granted
    third = rate.attempt(1)
    assert third.wait == (first.server_us + US - third.server_us) / US


def test_below_one_a_second_the_window_is_longer(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 0.5)
    assert (rate.capacity, rate.window_us) == (1, 2 * US)

    first = rate.attempt(1)
    second = rate.attempt(1)

    assert second.wait == (first.server_us + 2 * US - second.server_us) / US
    assert 1990 < redis.pttl(keys.sms_rate()) <= 2001


def test_raw_and_decoding_clients_share_one_limiter(svc, redis_server):
    decoded = SegmentRate(svc.redis, keys.sms_rate(), 3)
    raw_client = redis_lib.Redis.from_url(redis_server.url)  # bytes, as RQ's client is
    raw = SegmentRate(raw_client, keys.sms_rate(), 3)

    first = raw.attempt(2)
    second = decoded.attempt(1)
    third = raw.attempt(1)
    fourth = decoded.attempt(1)

    assert first.granted and second.granted
    assert third.wait == (first.server_us + US - third.server_us) / US
    assert fourth.wait == (first.server_us + US - fourth.server_us) / US
    raw_client.close()


def test_a_key_left_by_the_old_limiter_is_replaced(redis):
    redis.set(keys.sms_rate(), "1795395600000.000", px=2000)  # the GCRA's string
    granted = SegmentRate(redis, keys.sms_rate(), 10).attempt(1)
    assert granted.granted
    assert logged(redis) == [(granted.server_us, 1)]


def test_acquire_sleeps_the_waits_it_is_given_and_returns_their_sum(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 1)
    rate.attempt(1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            redis.delete(keys.sms_rate())  # the grant has left the window

    waited = rate.acquire(1, sleep=sleep)

    assert len(slept) == 2 and all(0.9 < s <= 1.0 for s in slept)
    assert waited == sum(slept)
    assert len(logged(redis)) == 1


def test_acquire_with_real_time_waits_for_the_oldest_grant_to_leave(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 1)
    now = server_us(redis)
    log_grants(redis, (now - 980_000, 1))

    waited = rate.acquire(1)

    assert 0 < waited <= 0.02
    (granted,) = logged(redis)
    assert granted[0] >= now + 20_000


def test_acquire_gives_up_past_max_wait_without_reserving(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 1)
    rate.attempt(1)
    before = logged(redis)
    slept: list[float] = []

    with pytest.raises(RateLimitTimeout) as raised:
        rate.acquire(1, sleep=slept.append, max_wait=0.5)

    assert slept == []
    assert raised.value.segments == 1 and 0.5 < raised.value.wait <= 1.0
    assert logged(redis) == before


@pytest.mark.parametrize("segments", [0, -1, 1.5, True, "2"])
def test_segments_must_be_a_positive_whole_number(redis, segments):
    rate = SegmentRate(redis, keys.sms_rate(), 10)
    with pytest.raises(ValueError):
        rate.attempt(segments)
    assert not redis.exists(keys.sms_rate())


@pytest.mark.parametrize("per_second", [0, -1, float("nan"), float("inf")])
def test_bad_rates_are_refused(redis, per_second):
    with pytest.raises(ValueError):
        SegmentRate(redis, keys.sms_rate(), per_second)


def test_there_is_no_headroom_any_more(redis):
    with pytest.raises(TypeError):
        SegmentRate(redis, keys.sms_rate(), 10, headroom=1)  # type: ignore[call-arg]


# One worker process: wait for the start time, then send as fast as the limiter allows and
# print the grants as JSON [[server_us, segments], ...].
WORKER = """
import json, random, sys, time
import redis
from ivr.ratelimit import SegmentRate

url, key, per_second, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
client = redis.Redis.from_url(url)
rate = SegmentRate(client, key, per_second)
rng = random.Random(seed)
client.ping()
print("ready", flush=True)
start_us, end_us = map(int, sys.stdin.readline().split())
seconds, micros = client.time()
time.sleep(max(0, start_us - (seconds * 1_000_000 + micros)) / 1e6)
grants = []
size = rng.choice((1, 2))
while True:
    attempt = rate.attempt(size)
    if attempt.granted:
        grants.append((attempt.server_us, size))
        size = rng.choice((1, 2))
    if attempt.server_us >= end_us:
        break
    time.sleep(attempt.wait)
print(json.dumps(grants))
"""


def test_most_in_window_counts_half_open_windows():
    assert most_in_window([(0, 19), (US - 1, 2)]) == 21
    assert most_in_window([(0, 19), (US, 2)]) == 19
    assert most_in_window([(0, 1), (500_000, 2), (US, 1), (1_400_000, 1)]) == 4


@pytest.mark.slow  # two processes and 3 s of wall clock
def test_two_worker_processes_stay_within_the_limit_in_every_second_at_full_speed(
        redis, redis_server):
    per_second, seconds = 20, 3
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with ExitStack() as stack:
        workers = [stack.enter_context(subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_server.url, keys.sms_rate(), str(per_second),
             str(seed)],
            cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)) for seed in (1, 2)]
        for worker in workers:
            assert worker.stdout is not None and worker.stdin is not None
            assert worker.stdout.readline() == "ready\n", worker.communicate()[1]
        start = server_us(redis) + 20_000
        end = start + seconds * US
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{start} {end}\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=30) for worker in workers]

    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    per_worker = [[(t, n) for t, n in json.loads(out)] for out, _ in outputs]
    assert all(per_worker), "both workers were granted sends"
    grants = sorted(per_worker[0] + per_worker[1])
    assert {n for _, n in grants} == {1, 2}

    # Every sliding second, not only the whole seconds from the start.
    assert most_in_window(grants) <= per_second
    # Whole seconds from the start hold at most `seconds * per_second` segments; the limiter
    # wastes almost none of them.
    sent = sum(n for t, n in grants if start <= t < end)
    assert sent <= seconds * per_second
    assert sent >= 0.95 * seconds * per_second, (sent, seconds)
