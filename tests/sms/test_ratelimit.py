"""ivr/ratelimit.py: the global SMS rate in segments, decided by one Lua script on Redis time.

Expected waits are computed from the server times the script itself reports, so they are
exact. The one test that has to take real time runs two worker processes for 2.5 s.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from ivr import keys
from ivr.ratelimit import KEEP_US, Attempt, RateLimitTimeout, SegmentRate

ROOT = Path(__file__).resolve().parents[2]
US = 1_000_000


def tat_us(redis) -> int:
    """The stored theoretical arrival time, in microseconds."""
    return round(float(redis.get(keys.sms_rate())) * 1000)


def server_us(redis) -> int:
    seconds, micros = redis.time()
    return seconds * US + micros


def interval_us(segments: int, pace: float) -> int:
    return math.ceil(segments * US / pace)


def test_first_send_is_granted_and_stores_the_next_arrival_time(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10, headroom=0)

    first = rate.attempt(1)

    assert first == Attempt(0.0, first.server_us)
    assert first.granted
    assert tat_us(redis) == first.server_us + 100_000
    assert 2000 < redis.pttl(keys.sms_rate()) <= 2100  # the TAT plus KEEP_US


def test_second_send_at_once_waits_one_interval_and_reserves_nothing(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10, headroom=0)
    first = rate.attempt(1)
    stored = redis.get(keys.sms_rate())

    second = rate.attempt(1)

    assert not second.granted
    assert second.wait == (first.server_us + 100_000 - second.server_us) / US
    assert 0.09 < second.wait <= 0.1
    assert redis.get(keys.sms_rate()) == stored
    assert rate.try_acquire(1) > 0.0
    assert redis.get(keys.sms_rate()) == stored


def test_a_message_costs_one_interval_per_segment(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10, headroom=0)
    first = rate.attempt(3)

    after = rate.attempt(1)

    assert tat_us(redis) == first.server_us + 300_000
    assert after.wait == (first.server_us + 300_000 - after.server_us) / US
    assert 0.29 < after.wait <= 0.3


def test_with_no_headroom_a_message_waits_for_its_own_extra_segments_first(redis):
    # The plain-GCRA hole: nineteen singles 50 ms apart, then a double the moment the TAT
    # comes due, would be 21 segments in one second at 20/s. The double waits one more interval.
    rate = SegmentRate(redis, keys.sms_rate(), 20, headroom=0)
    now = server_us(redis)
    redis.set(keys.sms_rate(), f"{now / 1000:.3f}")

    double = rate.attempt(2)
    single = rate.attempt(1)

    assert double.wait == (now + 50_000 - double.server_us) / US
    assert single.granted
    assert tat_us(redis) == single.server_us + 50_000


def test_the_default_headroom_lets_two_segments_through_and_paces_at_the_rate_less_one(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 20)
    assert (rate.headroom, rate.pace) == (1, 19.0)
    now = server_us(redis)
    redis.set(keys.sms_rate(), f"{now / 1000:.3f}")

    triple = rate.attempt(3)
    double = rate.attempt(2)

    assert triple.wait == (now + interval_us(1, 19) - triple.server_us) / US
    assert double.granted
    assert tat_us(redis) == double.server_us + interval_us(2, 19)
    assert rate.interval(2) == pytest.approx(2 / 19)


@pytest.mark.parametrize(("per_second", "headroom"), [
    (0.5, 0), (1, 0), (3, 0), (3.5, 1), (10, 1), (100, 1),
])
def test_default_headroom(redis, per_second, headroom):
    assert SegmentRate(redis, keys.sms_rate(), per_second).headroom == headroom


def test_rates_below_one_and_fractional_rates(redis):
    slow = SegmentRate(redis, keys.sms_rate(), 0.5)
    first = slow.attempt(1)
    second = slow.attempt(1)
    assert second.wait == (first.server_us + 2 * US - second.server_us) / US
    # The key outlives the TAT by ten intervals (20 s) here, more than KEEP_US.
    assert 21_000 < redis.pttl(keys.sms_rate()) <= 22_000

    redis.delete(keys.sms_rate())
    fractional = SegmentRate(redis, keys.sms_rate(), 2.5)
    first = fractional.attempt(2)
    assert tat_us(redis) == first.server_us + 800_000
    assert fractional.attempt(1).wait > 0.79


def test_raw_and_decoding_clients_share_one_limiter(svc):
    decoded = SegmentRate(svc.redis, keys.sms_rate(), 10, headroom=0)
    raw = SegmentRate(svc.rq_redis, keys.sms_rate(), 10, headroom=0)

    first = raw.attempt(2)
    second = decoded.attempt(1)
    third = raw.attempt(1)

    assert first.granted
    assert second.wait == (first.server_us + 200_000 - second.server_us) / US
    assert third.wait == (first.server_us + 200_000 - third.server_us) / US


def test_acquire_sleeps_the_waits_it_is_given_and_returns_their_sum(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10, headroom=0)
    rate.attempt(1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            redis.delete(keys.sms_rate())  # the interval has passed

    waited = rate.acquire(1, sleep=sleep)

    assert len(slept) == 2 and all(0 < s <= 0.1 for s in slept)
    assert waited == sum(slept)
    assert redis.exists(keys.sms_rate())


def test_acquire_with_real_time_takes_about_one_interval(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 50, headroom=0)
    first = rate.attempt(1)

    waited = rate.acquire(1)

    assert 0 < waited <= 0.02
    assert tat_us(redis) >= first.server_us + 2 * 20_000


def test_acquire_gives_up_past_max_wait_without_reserving(redis):
    rate = SegmentRate(redis, keys.sms_rate(), 10, headroom=0)
    rate.attempt(1)
    stored = redis.get(keys.sms_rate())
    slept: list[float] = []

    with pytest.raises(RateLimitTimeout) as raised:
        rate.acquire(1, sleep=slept.append, max_wait=0.05)

    assert slept == []
    assert raised.value.segments == 1 and 0.05 < raised.value.wait <= 0.1
    assert redis.get(keys.sms_rate()) == stored


@pytest.mark.parametrize("segments", [0, -1, 1.5, True, "2"])
def test_segments_must_be_a_positive_whole_number(redis, segments):
    rate = SegmentRate(redis, keys.sms_rate(), 10)
    with pytest.raises(ValueError):
        rate.attempt(segments)
    assert not redis.exists(keys.sms_rate())


@pytest.mark.parametrize(("per_second", "headroom"), [
    (0, None), (-1, None), (float("nan"), None), (float("inf"), None),
    (10, -1), (10, 1.0), (1, 1), (2.5, 3),
])
def test_bad_settings_are_refused(redis, per_second, headroom):
    with pytest.raises(ValueError):
        SegmentRate(redis, keys.sms_rate(), per_second, headroom=headroom)


def test_the_key_is_the_documented_string_with_a_ttl_just_past_the_tat(redis):
    SegmentRate(redis, keys.sms_rate(), 20).attempt(2)
    assert redis.type(keys.sms_rate()) == "string"
    ttl_ms = redis.pttl(keys.sms_rate())
    assert KEEP_US // 1000 < ttl_ms <= KEEP_US // 1000 + math.ceil(2000 / 19)


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


def most_in_one_second(grants: list[tuple[int, int]]) -> int:
    """The most segments in any window [t, t + 1 s), grants sorted by time."""
    best = total = first = 0
    for t, n in grants:
        total += n
        while grants[first][0] <= t - US:
            total -= grants[first][1]
            first += 1
        best = max(best, total)
    return best


def test_most_in_one_second_counts_half_open_windows():
    assert most_in_one_second([(0, 19), (US - 1, 2)]) == 21
    assert most_in_one_second([(0, 19), (US, 2)]) == 19
    assert most_in_one_second([(0, 1), (500_000, 2), (US, 1), (1_400_000, 1)]) == 4


def test_two_worker_processes_stay_within_the_limit_in_every_second(redis, redis_server):
    per_second, seconds = 20, 2.5
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
        end = start + int(seconds * US)
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

    assert most_in_one_second(grants) <= per_second
    sent = sum(n for t, n in grants if start <= t < end)
    assert sent / seconds >= 0.9 * per_second, (sent, seconds)
