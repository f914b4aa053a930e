"""The global SMS send rate, counted in segments and shared by every worker through Redis.

One Lua script decides each send with Redis server time (``TIME``), so every worker agrees
and host clocks don't matter. It is a GCRA with burst tolerance 0. The one Redis key holds
the theoretical arrival time (TAT) in ms, with three decimals (exact microseconds).

Let R be ``per_second``, h the headroom (below), P = R - h the pace and T = 1/P. A message of
n segments is granted at server time t only when

    t >= TAT + e(n)·T,   where e(n) = max(0, n - 1 - h)    (the pre-wait)

and then TAT := t + n·T. Nothing else changes the key.

Guarantee: every half-open window [a, a + 1 s) holds at most ceil(R) segments, which is R
when R is a whole number. The only exception is a window that holds a single message of more
than ceil(R) segments, because a message is never split. Over the long run the average is at
most P <= R. So for R < 1 there is at most one message in any second, and messages average
R segments a second.

Proof. Take grants i < k in one window, so t_k - t_i < 1. Each grant j + 1 comes at or after
TAT_j + e_{j+1}·T = t_j + n_j·T + e_{j+1}·T, so t_k - t_i >= T·(n_i + … + n_{k-1} + e_k).
That makes n_i + … + n_{k-1} + e_k < P, and because these are whole numbers, at most
ceil(P) - 1. The window's total is therefore at most ceil(P) - 1 + n_k - e_k
= ceil(P) - 1 + min(n_k, h + 1) <= ceil(P) + h = ceil(R). The script rounds every
interval up to the microsecond, so rounding only widens the gaps.

Why not plain GCRA (P = R, no pre-wait)? It only spaces each send after the previous
message's cost, so the last message in a window is free. At 20/s, nineteen one-segment
sends 50 ms apart followed by one two-segment send put 21 segments in one second.

No single stored number can be exact at full pace. After nineteen singles, a double must
wait one interval longer. After nine doubles it need not, but the TAT is the same in both
cases. The price of being exact is paid in one of two ways:

- headroom h = 0: a message of n segments costs (2n - 1)·T in a busy stream (doubles run at
  2/3 of R, singles at full R);
- headroom h >= 1: everything runs at P = R - h, and messages up to h + 1 segments need no
  pre-wait. At R = 20 and h = 1 that is 19 segments a second, 95 %, for any mix of one and
  two segments.

The default headroom is 1 when R > 3, the point above which it beats h = 0 for two-segment
messages (1 - 1/R > 2/3), and 0 otherwise.

The key lives until max(2 s, 10·T) after the TAT. By then no 1-second window and no pre-wait
of a message up to h + 11 segments can involve the last grant, so letting the key expire
loosens nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

KEEP_US = 2_000_000
"""The key outlives the TAT by at least this (microseconds)."""
KEEP_INTERVALS = 10
"""…and by at least this many segment intervals (the pre-wait of h + 11 segments)."""
AUTO_HEADROOM_ABOVE = 3.0
"""Rates above this get headroom 1 by default (see the module docstring)."""

# KEYS[1]: the TAT, ms with 3 decimals. ARGV: pre-wait, cost, keep (all microseconds).
# Returns {granted 0|1, wait in us, server time in us}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('GET', KEYS[1])
if stored then
  local ready = math.floor(tonumber(stored) * 1000 + 0.5) + tonumber(ARGV[1])
  if now < ready then
    return {0, ready - now, now}
  end
end
local tat = now + tonumber(ARGV[2])
local ttl_ms = math.ceil((tonumber(ARGV[2]) + tonumber(ARGV[3])) / 1000)
redis.call('SET', KEYS[1], string.format('%.3f', tat / 1000), 'PX', ttl_ms)
return {1, 0, now}
"""


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
        key: the TAT string, normally `ivr.keys.sms_rate()`.
        per_second: segments a second, > 0; fractions and rates below 1 are fine.
        headroom: how many segments past the first a message may carry without a pre-wait.
            It costs `headroom` segments a second of pace. The default, None, means 1 above
            3/s and 0 otherwise. All workers sharing a key must use the same values.
    """

    def __init__(self, redis_client: redis.Redis, key: str, per_second: float, *,
                 headroom: int | None = None) -> None:
        per_second = float(per_second)
        if not math.isfinite(per_second) or per_second <= 0:
            raise ValueError(f"per_second must be a positive number, not {per_second!r}")
        if headroom is None:
            headroom = 1 if per_second > AUTO_HEADROOM_ABOVE else 0
        if isinstance(headroom, bool) or not isinstance(headroom, int) or headroom < 0:
            raise ValueError(f"headroom must be a whole number >= 0, not {headroom!r}")
        if headroom >= per_second:
            raise ValueError(f"headroom {headroom} leaves no pace at {per_second}/s")
        self.key = key
        self.per_second = per_second
        self.headroom = headroom
        self.pace = per_second - headroom
        self._keep_us = max(KEEP_US, math.ceil(KEEP_INTERVALS * 1_000_000 / self.pace))
        self._script = redis_client.register_script(_GCRA)

    def interval(self, segments: int) -> float:
        """Seconds that `segments` add to the TAT: the spacing after such a message."""
        return segments / self.pace

    def attempt(self, segments: int) -> Attempt:
        """Grant and reserve `segments` now if the rate allows; otherwise reserve nothing."""
        if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
            raise ValueError(f"segments must be a whole number >= 1, not {segments!r}")
        pre_wait = max(0, segments - 1 - self.headroom)
        args = [math.ceil(pre_wait * 1_000_000 / self.pace),
                math.ceil(segments * 1_000_000 / self.pace), self._keep_us]
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
