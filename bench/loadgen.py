"""The webhook load: many distinct signed Twilio calls, sent over HTTP/1.1 keep-alive.

The client is plain asyncio (no third-party code): `concurrency` connections, each sending
its next pre-built request as soon as the previous answer arrived (a closed loop, as a
load balancer's connection pool would). Requests are built and signed before the clock
starts, so the client spends its time on sockets only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlencode

from common import AUTH_TOKEN, PUBLIC_BASE_URL, phone_of, unknown_phone
from twilio.request_validator import RequestValidator

WITHHELD = ("anonymous", "+266696687", "")
SUPPORT_LINE = "+815012345678"


class CallerMix:
    """Who calls, in arrival order: 60 % known customers (40 % of them affected by the
    fiber incident, 5 % VIP, 10 % English), 30 % unknown numbers, 10 % withheld.

    Known callers walk a shuffled customer list, so a number calls a second time only after
    every customer in the pool has called once; 2 % of calls come from 20 customers who keep
    calling (their third call in 24 h is a repeat caller: warm transfer to an SV), and 5 % of
    the unknown callers call back once. `pool` is the customer indices that call, so the same
    mix can run against 1,000 or 1,000,000 customers.
    """

    def __init__(self, pool: Sequence[int], seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.pool = list(pool)
        self.order: list[int] = []
        self.unknown_next = 0
        self.unknown_recent: list[str] = []
        self.repeaters = [phone_of(i) for i in self.rng.sample(self.pool, min(20, len(pool)))]

    def _known(self) -> str:
        if not self.order:
            self.order = list(self.pool)
            self.rng.shuffle(self.order)
        return phone_of(self.order.pop())

    def next(self) -> str:
        r = self.rng.random()
        if r < 0.02:
            return self.rng.choice(self.repeaters)
        if r < 0.60:
            return self._known()
        if r < 0.90:
            if self.unknown_recent and self.rng.random() < 0.05:
                return self.unknown_recent.pop(self.rng.randrange(len(self.unknown_recent)))
            phone = unknown_phone(self.unknown_next)
            self.unknown_next += 1
            self.unknown_recent = (self.unknown_recent + [phone])[-200:]
            return phone
        return self.rng.choice(WITHHELD)

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


def twilio_form(call_sid: str, raw_from: str) -> dict[str, str]:
    """The parameters Twilio posts for an incoming call (as many as the real webhook has)."""
    country = "JP" if raw_from.startswith("+81") else ""
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9%22%7D",
        "Called": SUPPORT_LINE,
        "CalledCity": "",
        "CalledCountry": "JP",
        "CalledState": "",
        "CalledZip": "",
        "Caller": raw_from,
        "CallerCity": "",
        "CallerCountry": country,
        "CallerState": "",
        "CallerZip": "",
        "Direction": "inbound",
        "From": raw_from,
        "FromCity": "",
        "FromCountry": country,
        "FromState": "",
        "FromZip": "",
        "StirVerstat": "TN-Validation-Passed-C" if country else "",
        "To": SUPPORT_LINE,
        "ToCity": "",
        "ToCountry": "JP",
        "ToState": "",
        "ToZip": "",
    }


def signature(url: str, form: dict[str, str], key: bytes = AUTH_TOKEN.encode()) -> str:
    """RequestValidator.compute_signature for single-valued forms, without its per-value
    exceptions (signed_requests checks that the two agree)."""
    text = url + "".join(name + value for name, value in sorted(form.items()))
    return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha1).digest()).decode()


def form_body(form: dict[str, str], memo: dict[str, str]) -> bytes:
    """urlencode(form), remembering each value's quoting (most values repeat)."""
    parts = []
    for name, value in form.items():
        quoted = memo.get(value)
        if quoted is None:
            quoted = memo[value] = quote_plus(value)
        parts.append(f"{name}={quoted}")
    return "&".join(parts).encode()


def signed_requests(path: str, froms: Sequence[str], run: int, host: str) -> list[bytes]:
    """One complete HTTP request per caller, each with its own CallSid and a valid
    X-Twilio-Signature over PUBLIC_BASE_URL + path (what ivr.signature checks)."""
    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + path
    out = []
    memo: dict[str, str] = {}
    for i, raw_from in enumerate(froms):
        form = twilio_form(f"CA{run:06x}{i:026x}", raw_from)
        body = form_body(form, memo)
        if i < 3 and body != urlencode(form).encode():
            raise AssertionError("bench form encoding differs from urlencode")
        sig = signature(url, form)
        if i < 3 and sig != validator.compute_signature(url, form):
            raise AssertionError("bench signature differs from twilio's")
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                "User-Agent: TwilioProxy/1.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Twilio-Signature: {sig}\r\n\r\n")
        out.append(head.encode() + body)
    return out


@dataclass
class LoadResult:
    """What one load run measured; latencies in milliseconds."""

    sent: int = 0
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    reused: int = 0
    client_cpu: float = 0.0

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, float | int]:
        return {"rps": round(self.rps, 1), "completed": self.completed, "errors": self.errors,
                "p50_ms": round(self.percentile(0.50), 2),
                "p95_ms": round(self.percentile(0.95), 2),
                "p99_ms": round(self.percentile(0.99), 2),
                "max_ms": round(max(self.latencies), 2) if self.latencies else 0.0,
                "seconds": round(self.seconds, 2), "reused_requests": self.reused,
                "client_cpu_s": round(self.client_cpu, 2)}


def _is_twiml(status: int, head: bytes, body: bytes) -> bool:
    return (status == 200 and b"content-type: text/xml" in head.lower()
            and body.startswith(b"<?xml") and body.rstrip().endswith(b"</Response>"))


async def _connection(host: str, port: int, requests: Sequence[bytes], state: dict[str, float],
                      result: LoadResult, timeout: float, recycle: float, index: int) -> None:
    # open one connection at a time, so the server's workers take turns accepting them
    await asyncio.sleep(index * 0.002)
    reader, writer = await asyncio.open_connection(host, port)
    # staggered, so the connections are not all replaced at the same moment
    renew = time.perf_counter() + recycle * (0.5 + (index % 8) / 8)
    try:
        while True:
            i = int(state["next"])
            now = time.perf_counter()
            if now >= state["end"] or i >= state["limit"]:
                return
            state["next"] = i + 1
            request = requests[i % len(requests)]
            if i >= len(requests):
                result.reused += 1
            result.sent += 1
            start = time.perf_counter()
            try:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                status = int(head[9:12])
                length = 0
                close = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                body = await asyncio.wait_for(reader.readexactly(length), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError) as e:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{type(e).__name__}: {e}"[:200])
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            done = time.perf_counter()
            if state["measure_from"] <= start and done <= state["end"]:
                result.completed += 1
                result.latencies.append((done - start) * 1000)
                if not _is_twiml(status, head, body):
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"HTTP {status}: {body[:160]!r}")
            if close or done >= renew:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                renew = time.perf_counter() + recycle
    finally:
        writer.close()


async def _run(host: str, port: int, requests: Sequence[bytes], concurrency: int,
               warmup: float, duration: float | None, limit: int | None,
               timeout: float, recycle: float) -> LoadResult:
    result = LoadResult()
    began = time.perf_counter()
    # A count-limited run measures every request; a timed run only those after the warm-up.
    # Either way the loop stops by the deadline.
    hard_stop = began + (warmup + duration if duration else 120.0)
    state = {"next": 0, "limit": float(limit if limit is not None else 1 << 62),
             "measure_from": began + warmup, "end": hard_stop}
    cpu = time.process_time()
    await asyncio.gather(*(_connection(host, port, requests, state, result, timeout, recycle, i)
                           for i in range(concurrency)))
    ended = min(time.perf_counter(), hard_stop)
    result.client_cpu = time.process_time() - cpu
    result.seconds = ended - (began + warmup)
    return result


def run_load(host: str, port: int, requests: Sequence[bytes], *, concurrency: int = 16,
             warmup: float = 2.0, duration: float | None = 10.0, limit: int | None = None,
             timeout: float = 5.0, recycle: float = 0.5) -> LoadResult:
    """Send `requests` in order over `concurrency` keep-alive connections: for `warmup` +
    `duration` seconds (timed), or until `limit` requests were sent (at most 120 s).

    Each connection is replaced about every `recycle` seconds (as a proxy's pool recycles
    them). gunicorn hands a new connection to whichever worker accepts it first, and one
    worker can take all 16 at the start of a run and leave the other idle for the whole
    run; new connections go mostly to the worker with time to accept them, which spreads
    the load over both, as many callers do.
    """
    return asyncio.run(_run(host, port, requests, concurrency, warmup, duration, limit,
                            timeout, recycle))
