"""The console's live view at 50 open consoles during a storm: what one refresh costs Redis.

Run from the repository root:
    .venv/bin/python bench/live_bench.py [--consoles 50] [--calls 200] [--ticks 20]

Every open live view asks for /console/live/panel every few seconds. A fresh private
redis-server gets an active incident, `--calls` callers in progress (half of them waiting,
some escalated) and a fan-out's counters; `--consoles` supervisors sign in through the
real form (Flask's test client, in-process: HTTP parsing is the same for every page and
would only blur the Redis figures). One tick is every console asking once. Two modes run
in the same process, taking turns for `--ticks` ticks each:
  shared    as shipped: one snapshot per process per SNAPSHOT_SECONDS (each tick is a new
            second: the kept snapshot is dropped before it), the rest read the copy;
  baseline  every request reads its own snapshot (SNAPSHOT_SECONDS = 0).
Printed per tick: Redis commands (INFO commandstats), Redis CPU (INFO cpu), this process's
CPU, and the ratio shared / baseline. Each request also reloads the signed-in person (one
HGETALL), which both modes pay.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import app_config, declare_incident, redis_cpu, redis_url, seed_roster  # noqa: E402

PASSWORD = "bench password 0123"


def commands(r: redis.Redis) -> int:
    return int(r.info("stats")["total_commands_processed"])


def seed(svc: Any, calls: int) -> None:
    from ivr import call, escalation, keys

    doc = declare_incident(svc)
    seed_roster(svc)
    svc.redis.hset(keys.incident_counters(doc["id"]), mapping={"sms_sent": 1200,
                                                              "sms_failed": 7})
    for i in range(calls):
        sid = f"CA{i:032x}"
        info = call.CallInfo(sid, f"+8190{i:08d}", "+815012345678", f"+8190{i:08d}")
        call.answer_incoming(svc, info)
        if i % 2:
            call.enqueue(svc, sid, {"purpose": "status"})
        if i % 25 == 0:
            escalation.start(svc, sid, trigger="operator", reason="operator",
                             raised_by="op", note="bench")


def sign_in(app: Any, login: str) -> Any:
    client = app.test_client()
    page = client.get("/console/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    answer = client.post("/console/signin", data={"login": login, "password": PASSWORD,
                                                  "csrf_token": token.group(1)})
    assert answer.status_code == 302, answer.status_code
    return client


def tick(app: Any, clients: list[Any]) -> None:
    app.extensions.pop("ivr.console.floor", None)  # a new second: the kept copy is stale
    for client in clients:
        response = client.get("/console/live/panel")
        assert response.status_code == 200, response.status_code


def measure(app: Any, r: redis.Redis, clients: list[Any], ticks: int) -> dict[str, float]:
    before_cmd, before_cpu = commands(r), redis_cpu(r)
    own = time.process_time()
    for _ in range(ticks):
        tick(app, clients)
    return {"commands": (commands(r) - before_cmd - 2) / ticks,  # the two INFO calls
            "redis_ms": (redis_cpu(r) - before_cpu) * 1000 / ticks,
            "web_ms": (time.process_time() - own) * 1000 / ticks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--consoles", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()

    from ivr import create_app, person
    from ivr.console import live
    from ivr.services import build_services

    with redis_url() as url:
        config = app_config(url)
        svc = build_services(config, redis_timeout=5.0)
        svc.redis.flushdb()
        seed(svc, args.calls)
        app = create_app(config, services=svc)
        for i in range(args.consoles):
            person.create(svc, login=f"sv{i}", name=f"SV {i}", role="supervisor",
                          password=PASSWORD, by="bench")
        clients = [sign_in(app, f"sv{i}") for i in range(args.consoles)]
        r = redis.Redis.from_url(url)
        tick(app, clients)  # warm up: templates compiled, scripts loaded
        shipped = live.SNAPSHOT_SECONDS
        results: dict[str, list[dict[str, float]]] = {"shared": [], "baseline": []}
        for _ in range(4):
            for mode in ("shared", "baseline"):
                live.SNAPSHOT_SECONDS = shipped if mode == "shared" else 0.0
                results[mode].append(measure(app, r, clients, max(1, args.ticks // 4)))
        live.SNAPSHOT_SECONDS = shipped
        r.close()

    def mean(mode: str, key: str) -> float:
        return sum(x[key] for x in results[mode]) / len(results[mode])

    print(f"live view: {args.consoles} consoles, {args.calls} calls in progress, one tick = "
          f"every console refreshing once")
    print(f"{'per tick':<22}{'shared':>12}{'baseline':>12}{'ratio':>9}")
    for key, label in (("commands", "Redis commands"), ("redis_ms", "Redis CPU ms"),
                       ("web_ms", "web CPU ms")):
        shared, base = mean("shared", key), mean("baseline", key)
        print(f"{label:<22}{shared:>12.1f}{base:>12.1f}{shared / base:>8.2f}x")


if __name__ == "__main__":
    main()
