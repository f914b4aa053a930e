"""The objects every request and job needs, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry
from rq import Queue
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ivr import lua
from ivr.dev.rest import CONSOLE, ConsoleHttpClient
from ivr.flows import Flows, load_flows
from ivr.intent import Lexicon, load_lexicon
from ivr.prompts import Prompts, load_prompts

Clock = Callable[[], datetime]
TWILIO_TIMEOUT = 5.0


def utc_now() -> datetime:
    """Now, tz-aware UTC; the one clock production uses (tests freeze it with freezegun)."""
    return datetime.now(UTC)


class RebasedHttpClient(TwilioHttpClient):
    """Send every Twilio REST request to TWILIO_API_BASE_URL instead of *.twilio.com.

    Lets a Twilio-compatible mock (tests, local runs) stand in without patching the client.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parts = urlsplit(base_url)
        self.base_scheme, self.base_netloc = parts.scheme, parts.netloc

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        url = parts._replace(scheme=self.base_scheme, netloc=self.base_netloc).geturl()
        return super().request(method, url, *args, **kwargs)


@dataclass
class Services:
    """Redis, the job queue, Twilio, the clock and the validated flows/prompts.

    `redis` decodes its replies, so they are str although redis-py's hints say `bytes | str`
    (its `Redis` is not generic over the reply type): readers cast what they get. The
    annotations name `Redis` bare because the field `redis` hides the module in this body.
    """

    redis: Redis
    rq_redis: Redis
    twilio: Client
    queue: Queue
    sms_queue: Queue
    clock: Clock
    flows: Flows
    prompts: Prompts
    lexicon: Lexicon
    config: Mapping[str, Any]
    _scripts: dict[str, Script] = field(default_factory=dict, repr=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.get("IVR_TIMEZONE", "Asia/Tokyo"))

    def now(self) -> datetime:
        return self.clock()

    def script(self, name: str) -> Script:
        """Script ivr/lua/<name>.lua on `redis`, called as `script(keys=[…], args=[…])`: run
        by EVALSHA (loaded once per Redis, again after a restart), so the hot paths send a
        40-byte hash, not the script, and Redis skips hashing it."""
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = lua.register(self.redis, name)
        return found

    def local(self, iso: str | None) -> datetime | None:
        """A stored UTC ISO time in IVR_TIMEZONE, for what people read and hear."""
        if not iso:
            return None
        try:
            return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(self.tz)
        except (ValueError, OverflowError):  # a bad stored value: say nothing, not fail
            return None


def field_args(fields: Mapping[str, Any]) -> list[Any]:
    """A mapping as the field, value, field, value... arguments HSET takes inside a script."""
    return [x for pair in fields.items() for x in pair]


def redis_client(url: str, *, timeout: float, decode: bool) -> redis.Redis:
    """A client that fails fast: one short try, so a webhook can still answer with Redis down."""
    return redis.Redis.from_url(
        url,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def twilio_client(config: Mapping[str, Any]) -> Client:
    """Twilio's REST client with a 5 s timeout, sent to TWILIO_API_BASE_URL.

    The literal value "console" (scripts/dev sets it when it made up the credentials) keeps
    every request on this machine: ivr.dev.rest logs it and answers with SIDs.
    """
    base = str(config.get("TWILIO_API_BASE_URL") or "https://api.twilio.com")
    http: TwilioHttpClient
    if base == CONSOLE:
        http = ConsoleHttpClient()
    elif urlsplit(base).netloc == "api.twilio.com":
        http = TwilioHttpClient(timeout=TWILIO_TIMEOUT)
    else:
        http = RebasedHttpClient(base, timeout=TWILIO_TIMEOUT)
    return Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], http_client=http)


def build_services(
    config: Mapping[str, Any], *, clock: Clock = utc_now, redis_timeout: float | None = None,
    flows: Flows | None = None, prompts: Prompts | None = None, lexicon: Lexicon | None = None,
) -> Services:
    """Build everything from settings; `rq_redis` stays undecoded because RQ needs bytes.

    `flows`, `prompts` and `lexicon` default to loading IVR_FLOWS_DIR and IVR_PROMPTS_DIR
    (about half a second); a caller that already holds them (the tests, once per session)
    passes them in. They are read-only, so one copy may serve any number of Services.

    The web passes no `redis_timeout` and gets IVR_REDIS_TIMEOUT (short, so a webhook still
    answers when Redis is slow); the worker asks for a longer one. The job queue may live on a
    Redis of its own (IVR_QUEUE_REDIS_URL): RQ's multi-key commands cannot run on a Redis
    Cluster, while everything of ours can.
    """
    timeout = redis_timeout or float(config.get("IVR_REDIS_TIMEOUT", 0.25))
    url = str(config["REDIS_URL"])
    rq_redis = redis_client(str(config.get("IVR_QUEUE_REDIS_URL") or url), timeout=timeout,
                            decode=False)
    return Services(
        redis=redis_client(url, timeout=timeout, decode=True),
        rq_redis=rq_redis,
        twilio=twilio_client(config),
        queue=Queue("default", connection=rq_redis),
        sms_queue=Queue("sms", connection=rq_redis),
        clock=clock,
        flows=load_flows(config["IVR_FLOWS_DIR"]) if flows is None else flows,
        lexicon=(load_lexicon(Path(config["IVR_FLOWS_DIR"]) / "intents.yaml")
                 if lexicon is None else lexicon),
        prompts=load_prompts(config["IVR_PROMPTS_DIR"]) if prompts is None else prompts,
        config=config,
    )
