"""What the benchmarks share: a private redis-server, the bench settings, and seeding.

Nothing here talks to anything but 127.0.0.1 (or the REDIS_URL you give, which must point at
an empty database: every benchmark flushes it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ivr import keys  # noqa: E402
from ivr.customer import Customer  # noqa: E402

AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
ADMIN_TOKEN = "bench-admin-token"
PUBLIC_BASE_URL = "https://ivr.bench.invalid"
# Nothing on /voice/incoming calls Twilio's REST API; if anything did, it would be refused at
# once by the loopback discard port instead of leaving the machine.
TWILIO_API_BASE_URL = "http://127.0.0.1:9"

SERVICES = ("fiber", "mobile", "tv")
REGIONS = ("tokyo", "osaka", "nagoya", "fukuoka", "sapporo", "sendai", "hiroshima", "naha")
INCIDENT_SERVICE = "fiber"  # customers with i % 10 < 4 use it: 40 % of the base is affected


def phone_of(i: int) -> str:
    """The i-th bench customer: a valid Japanese mobile number, +81 901x xxx xxx."""
    return f"+81901{i:07d}"


def unknown_phone(i: int) -> str:
    """The i-th caller nobody knows: a valid mobile number outside the customer range."""
    return f"+81801{i % 10_000_000:07d}"


def customer_fields(i: int, updated_at: str) -> dict[str, str]:
    """Customer.to_hash() of the i-th bench customer, built without the dataclass (1M of them
    are seeded); check_customer_shape() proves the two agree."""
    services = '["fiber", "mobile"]' if i % 10 < 4 else ('["mobile", "tv"]' if i % 10 == 9
                                                         else '["mobile"]')
    return {
        "phone": phone_of(i),
        "name": f"顧客{i:07d}",
        "account_id": f"A{i:08d}",
        "tier": "vip" if i % 20 == 3 else "standard",
        "services": services,
        "region": REGIONS[i % len(REGIONS)],
        "language": "en" if i % 10 == 7 else "ja",
        "sms_opt_in": "1",
        "mobile": "1",
        "updated_at": updated_at,
        "updated_by": "bench",
    }


def customer_services(i: int) -> tuple[str, ...]:
    return ("fiber", "mobile") if i % 10 < 4 else (("mobile", "tv") if i % 10 == 9
                                                   else ("mobile",))


def check_customer_shape() -> None:
    """The seeded hash is exactly what ivr.customer writes for the same customer."""
    now = datetime.now(UTC).isoformat()
    for i in (0, 3, 7, 9, 12):
        fields = customer_fields(i, now)
        real = Customer(phone=fields["phone"], name=fields["name"],
                        account_id=fields["account_id"], tier=fields["tier"],
                        services=list(customer_services(i)), region=fields["region"],
                        language=fields["language"], sms_opt_in=True, mobile=True,
                        updated_at=now, updated_by="bench").to_hash()
        assert real == fields, (real, fields)
        assert Customer.from_hash(fields) is not None


# Writes customers [ARGV[1], ARGV[2]) exactly as customer_fields() describes them, with the
# index sets; server-side, because a million HSETs through redis-py take minutes on a small
# machine. seed_customers() reads a sample back and compares it with customer_fields().
_SEED = """
local regions = {'tokyo', 'osaka', 'nagoya', 'fukuoka', 'sapporo', 'sendai', 'hiroshima', 'naha'}
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
  local phone = string.format('+81901%07d', i)
  local d = i % 10
  local services
  if d < 4 then services = '["fiber", "mobile"]'
  elseif d == 9 then services = '["mobile", "tv"]'
  else services = '["mobile"]' end
  local region = regions[(i % 8) + 1]
  local tier = 'standard'
  if i % 20 == 3 then tier = 'vip' end
  local language = 'ja'
  if d == 7 then language = 'en' end
  redis.call('HSET', '{ivr}:customer:' .. phone, 'phone', phone,
    'name', ARGV[4] .. string.format('%07d', i),
    'account_id', string.format('A%08d', i), 'tier', tier, 'services', services,
    'region', region, 'language', language, 'sms_opt_in', '1', 'mobile', '1',
    'updated_at', ARGV[3], 'updated_by', 'bench')
  redis.call('SADD', KEYS[1], phone)
  redis.call('SADD', '{ivr}:customers:service:mobile', phone)
  if d < 4 then redis.call('SADD', '{ivr}:customers:service:fiber', phone) end
  if d == 9 then redis.call('SADD', '{ivr}:customers:service:tv', phone) end
  redis.call('SADD', '{ivr}:customers:region:' .. region, phone)
end
return 1
"""


def seed_customers(r: redis.Redis, start: int, stop: int, *, batch: int = 10_000,
                   updated_at: str | None = None) -> float:
    """Write customers [start, stop) and their index sets (all, per service, per region) in
    server-side batches of `batch`; check a sample against Customer.to_hash(); return the
    seconds it took. `r` needs a socket timeout of seconds, not the web's 0.25 s."""
    check_customer_shape()
    assert keys.customers_all() == "{ivr}:customers:all"
    assert keys.customer("+1") == "{ivr}:customer:+1"
    assert keys.customers_by_service("x") == "{ivr}:customers:service:x"
    assert keys.customers_by_region("x") == "{ivr}:customers:region:x"
    began = time.perf_counter()
    now = updated_at or datetime.now(UTC).isoformat()
    script = r.register_script(_SEED)
    for lo in range(start, stop, batch):
        script(keys=[keys.customers_all()], args=[lo, min(lo + batch, stop), now, "顧客"])
    took = time.perf_counter() - began
    step = max(1, (stop - start) // 50)
    for i in list(range(start, stop, step)) + [stop - 1]:
        stored = {_text(k): _text(v) for k, v in r.hgetall(keys.customer(phone_of(i))).items()}
        expected = customer_fields(i, now)
        if stored != expected:
            raise RuntimeError(f"seeded customer {i} differs: {stored} != {expected}")
        for s in SERVICES:
            if r.sismember(keys.customers_by_service(s), phone_of(i)) != (
                    s in customer_services(i)):
                raise RuntimeError(f"seeded customer {i}: service set {s} is wrong")
    return took


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_redis(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with redis.Redis.from_url(url) as probe:
                probe.ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def redis_cpu(r: redis.Redis) -> float:
    """CPU seconds the Redis server has used (INFO cpu, user + system)."""
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (a gunicorn master's workers)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def proc_cpu(pid: int, *, reaped_children: bool = False) -> float | None:
    """CPU seconds (user + system) of one process so far, with those of its children it has
    already reaped when asked (an RQ worker's finished work horses); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15 if reaped_children else 13]) / CLK_TCK


def wait_until_up(url: str, proc: subprocess.Popen[bytes], what: str,
                  timeout: float = 30.0) -> None:
    """Poll `url` until it answers; RuntimeError naming `what` if `proc` dies or time runs
    out first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then reap()."""
    if proc.poll() is None:
        proc.terminate()
    reap(proc, grace)


def reap(proc: subprocess.Popen[Any], grace: float) -> None:
    """Wait `grace` seconds for a process already told to stop, then SIGKILL it. (A second
    SIGTERM would not do: RQ takes it as "stop now", killing the job in hand.)"""
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def with_db(url: str, db: int) -> str:
    """The same server, database `db`."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


def db_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(dict(parse_qsl(parts.query)).get("db", 0))
    return int(parts.path.strip("/") or 0)


@contextmanager
def redis_url(databases: int = 1) -> Iterator[str]:
    """REDIS_URL if set (its database and the `databases` - 1 after it must be empty), else
    a private redis-server on a free loopback port for the run, with persistence off."""
    given = os.environ.get("REDIS_URL")
    if given:
        # bench/run checked its REDIS_URL before the first benchmark filled it
        if os.environ.get("IVR_BENCH_REDIS_CHECKED") != "1":
            for db in range(db_of(given), db_of(given) + databases):
                with redis.Redis.from_url(with_db(given, db)) as r:
                    if r.dbsize():
                        sys.exit(f"database {db} of REDIS_URL has {r.dbsize()} keys; the "
                                 f"benchmarks flush databases {db_of(given)}.."
                                 f"{db_of(given) + databases - 1}, so point REDIS_URL at "
                                 "empty ones (e.g. redis://127.0.0.1:6379/10)")
        yield given
        return
    with private_redis() as url:
        yield url


class PrivateRedis:
    """A redis-server of the run's own on a free loopback port, persistence off, that can
    be taken away and brought back (`outage`) with its data, as a restarted production
    Redis would come back from its AOF or RDB."""

    def __init__(self, tmp: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed and REDIS_URL is not set (scripts/"
                     "bootstrap installs it)")
        self.args = [binary, "--bind", "127.0.0.1", "--port", str(free_port()), "--save", "",
                     "--appendonly", "no", "--dir", tmp, "--protected-mode", "yes"]
        self.url = f"redis://127.0.0.1:{self.args[4]}/0"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.url)
        return proc

    def outage(self, seconds: float) -> None:
        """Save, stop, stay away `seconds`, start again on the same port with the data."""
        with redis.Redis.from_url(self.url) as r:
            r.shutdown(save=True)
        reap(self.proc, 10.0)
        time.sleep(seconds)
        self.proc = self._start()

    def stop(self) -> None:
        stop_process(self.proc)


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the run's own on a free loopback port, persistence off; stopped
    after."""
    with private_redis_server() as server:
        yield server.url


@contextmanager
def private_redis_server() -> Iterator[PrivateRedis]:
    """PrivateRedis in a temporary directory; stopped after."""
    with tempfile.TemporaryDirectory(prefix="ivr-bench-redis-") as tmp:
        server = PrivateRedis(tmp)
        try:
            yield server
        finally:
            server.stop()


def settings(redis: str, **extra: Any) -> dict[str, str]:
    """The environment (PRODUCT.md §4 names) the app and the worker read in every benchmark."""
    env = {
        "REDIS_URL": redis,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": "+815012345678",
        "TWILIO_API_BASE_URL": TWILIO_API_BASE_URL,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "IVR_ADMIN_TOKEN": ADMIN_TOKEN,
        "IVR_TIMEZONE": "Asia/Tokyo",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def app_config(redis: str) -> dict[str, Any]:
    """The same settings as a create_app()/build_services() config mapping."""
    from ivr import config

    out = {name: getattr(config, name) for name in dir(config) if name.isupper()}
    out.update(config.settings_from_env(settings(redis)))
    return out


def declare_incident(svc: Any, *, notify: bool = False, audience: str = "all") -> dict[str, Any]:
    """One active major incident on the fiber service, through the API's own parser."""
    from ivr import incident

    body = {
        "title": "光回線の接続障害",
        "severity": "major",
        "scope": {"services": [INCIDENT_SERVICE], "regions": [], "numbers": []},
        "audience": audience,
        "announcement": {
            "ja": "現在、光回線サービスがご利用しにくい状況が発生しております。"
                  "ご迷惑をおかけし申し訳ございません。",
            "en": "Our fiber service is currently disrupted. We apologise for the trouble.",
        },
        "eta": None,
        "notify": notify,
    }
    return incident.declare(svc, incident.parse_new(body, svc), "bench")


def seed_roster(svc: Any) -> None:
    """Three on-call supervisors, so repeat callers get a real warm transfer."""
    from ivr import supervisor

    sups = [
        supervisor.Supervisor(phone="+819087650001", name="佐藤", skills=("general",),
                              level=2, on_call=True, order=1),
        supervisor.Supervisor(phone="+819087650002", name="鈴木", skills=("general",),
                              level=3, on_call=True, order=2),
        supervisor.Supervisor(phone="+819087650003", name="高橋",
                              skills=("billing", "technical"), level=3, on_call=True, order=3),
    ]
    supervisor.replace_roster(svc, sups)


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])
