"""The global SMS send rate, counted in segments and shared by every worker through Redis.

A sliding-window log. The one Redis key (``keys.sms_rate()``) is a sorted set of the grants
of the last second: member ``"<time_us>:<segments>:<random>"``, score the grant's Redis server
time in microseconds. One Lua script (ivr/lua/sms_rate.lua) decides each send, on Redis
time (``TIME``), so every worker agrees and host clocks don't matter:

1. drop the grants at or before ``now - W`` (W = 1 s): they are in no window with ``now``;
2. add up the segments S of the grants left, those in ``(now - W, now]``;
3. if ``S + n <= C`` (C = the limit), or the set is empty, add the grant and answer "go";
4. otherwise reserve nothing and answer the exact wait: walking the grants oldest first, find
   the first one whose leaving brings the segments still inside plus n to C or below (or
   empties the set); the wait is until it leaves, its score + W - now. Another worker may
   take the room first; the caller then simply asks again.

Guarantee: every half-open window ``[a, a + 1 s)`` holds at most C segments, where C is
``floor(per_second)``, since segments are whole. The one exception is a message of more than
C segments on its own, because a message is never split: it is granted only into an empty
window, so its window holds that message alone.

Proof. The script runs atomically, so grants are totally ordered and each sees all earlier
ones. Take any window and the last grant k made in it, at t_k < a + W. Every other grant in
the window came before k and is at or after a > t_k - W, so when k was granted step 1 kept it
(this holds even if the server clock stepped back). Step 3 then checked that they plus n_k
were at most C, or that there were none.

Throughput: a sender never waits while its message fits, and is told the exact moment it
will, so the limit is reached whenever demand is. Room is lost only while every waiting
message is bigger than the room left, which no exact limiter can avoid: granting each message
at the earliest moment the window allows is the best any schedule of the same messages can do,
and at 30/s, seven 4-segment messages fill a second with 28 segments. ``bench/sms_rate_bench.py``
measures it: about 98-100 % of 30/s for 1-2 segment messages with 1-4 workers; at 10/s with
1-4 segment messages mixed at random, about 88-90 % for one sender and more for several.

Rates below 1 a second can't be counted in a 1-second window: there W is 1/per_second seconds
and C is 1, so messages go at most once per W (one message, of any size, in any second).
A fractional rate above 1 is rounded down to whole segments a second (2.5 -> 2).

Each grant sets the key to expire W (rounded up to the ms, plus 1 ms) after it, when every
grant in the set has left the window, so an idle limiter leaves nothing behind.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from ivr import lua

WINDOW_US = 1_000_000
"""The sliding window, microseconds (longer only for rates below 1 a second)."""

def most_in_window(grants: list[tuple[int, int]], window_us: int = WINDOW_US) -> int:
    """The most segments granted in any half-open window [t, t + window_us), from
    (time_us, segments) grants sorted by time: the number this limiter promises never exceeds
    its capacity (checked by the tests and bench/sms_rate_bench.py)."""
    best = total = first = 0
    for t, n in grants:
        total += n
        while grants[first][0] <= t - window_us:
            total -= grants[first][1]
            first += 1
        best = max(best, total)
    return best


@dataclass(frozen=True)
class Attempt:
    """One decision of the limiter.

    `wait` is 0.0 when the segments were granted and reserved; otherwise it is the number of
    seconds until they could be, and nothing was reserved. `server_us` is the Redis server
    time of the decision in epoch microseconds.
    """

    wait: float
    server_us: int

    @property
    def granted(self) -> bool:
        return self.wait == 0.0


class RateLimitTimeout(TimeoutError):
    """acquire() would have had to wait longer than its max_wait."""

    def __init__(self, segments: int, waited: float, wait: float) -> None:
        super().__init__(f"{segments} segment(s) need {wait:.3f}s more after {waited:.3f}s")
        self.segments, self.waited, self.wait = segments, waited, wait


class SegmentRate:
    """Keep sends at or below `per_second` segments in any one second, shared by every worker
    that uses the same Redis key (see the module docstring for the exact guarantee).

    Args:
        redis_client: any redis-py client; decode_responses may be True or False.
        key: the sorted set of recent grants, normally `ivr.keys.sms_rate()`.
        per_second: segments a second, > 0. All workers sharing a key must use the same value.

    `capacity` is the segments allowed in one window and `window_us` the window: 1 s, or
    1/per_second s below one a second.
    """

    def __init__(self, redis_client: redis.Redis, key: str, per_second: float) -> None:
        per_second = float(per_second)
        if not math.isfinite(per_second) or per_second <= 0:
            raise ValueError(f"per_second must be a positive number, not {per_second!r}")
        self.key = key
        self.per_second = per_second
        self.capacity = max(1, math.floor(per_second))
        self.window_us = WINDOW_US if per_second >= 1 else math.ceil(WINDOW_US / per_second)
        self._script = lua.register(redis_client, "sms_rate")

    def attempt(self, segments: int) -> Attempt:
        """Grant and reserve `segments` now if the rate allows; otherwise reserve nothing."""
        if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
            raise ValueError(f"segments must be a whole number >= 1, not {segments!r}")
        args: list[int | str] = [segments, self.capacity, self.window_us, os.urandom(8).hex()]
        granted, wait_us, server_us = self._script(keys=[self.key], args=args)
        return Attempt(0.0 if granted else int(wait_us) / 1_000_000, int(server_us))

    def try_acquire(self, segments: int) -> float:
        """Reserve `segments` and return 0.0, or return the seconds to wait (reserving nothing)."""
        return self.attempt(segments).wait

    def acquire(self, segments: int, *, sleep: Callable[[float], object] = time.sleep,
                max_wait: float | None = None) -> float:
        """Wait until `segments` may be sent, reserve them, and return the seconds waited.

        Raises RateLimitTimeout, with nothing reserved, when the total wait would pass
        `max_wait`.
        """
        waited = 0.0
        while True:
            wait = self.try_acquire(segments)
            if wait == 0.0:
                return waited
            if max_wait is not None and waited + wait > max_wait:
                raise RateLimitTimeout(segments, waited, wait)
            sleep(wait)
            waited += wait
