"""Where /voice/incoming spends its time: the WSGI app called in-process, no HTTP, no gunicorn.

Run from the repository root:
    .venv/bin/python bench/profile_incoming.py [--calls 5000] [--profile 25] [--json out.json]

Builds bench_app (the real app plus the two baselines) against a private Redis seeded like
the webhook benchmark (10,000 customers, one incident, three supervisors), logging JSON at
INFO to a temp file as gunicorn.conf.py does, then calls each target `--calls` times in one
thread with distinct signed calls and prints the microseconds per request and the ratios:
the cost without gunicorn, sockets to the client, or threads competing for the GIL.

Then the steps of /voice/incoming one by one (the same functions the view calls, over the
same calls), next to what /bench/minimal does instead, and with --profile N the N most
expensive functions of /voice/incoming under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    declare_incident,
    redis_url,
    seed_customers,
    seed_roster,
    settings,
)
from loadgen import CallerMix, signed_requests  # noqa: E402

TARGETS = {"static": "/bench/static", "minimal": "/bench/minimal",
           "incoming": "/voice/incoming"}


def environs(raw: list[bytes]) -> list[dict[str, Any]]:
    """WSGI environs as gunicorn builds them (RAW_URI included) from raw HTTP requests."""
    out = []
    for req in raw:
        head, _, body = req.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        env: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "RAW_URI": path, "SCRIPT_NAME": "",
            "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1", "_body": body,
        }
        for line in lines[1:]:
            name, _, value = line.partition(": ")
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                env[key] = value
            else:
                env["HTTP_" + key] = value
        out.append(env)
    return out


def call(app: Any, env: dict[str, Any]) -> bytes:
    env = dict(env)
    env["wsgi.input"] = io.BytesIO(env.pop("_body"))
    status: list[str] = []
    body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
    if not status or not status[0].startswith("200") or not body.endswith(b"</Response>"):
        raise RuntimeError(f"{env['PATH_INFO']}: {status} {body[:200]!r}")
    return body


def steps(app: Any, svc: Any, froms: list[str]) -> dict[str, float]:
    """CPU microseconds of each step of /voice/incoming, in the order the view runs them."""
    import logging

    from common import AUTH_TOKEN, PUBLIC_BASE_URL
    from loadgen import twilio_form
    from twilio.request_validator import RequestValidator
    from twilio.twiml.voice_response import VoiceResponse
    from werkzeug.datastructures import MultiDict

    from ivr import call as calls
    from ivr import keys
    from ivr.phone import mask
    from ivr.twiml import twiml
    from ivr.voice.twiml import callback_url

    svc.redis.delete(*([k for k in svc.redis.scan_iter("{ivr}:caller:*", count=10_000)]
                       or ["-"]))
    forms = [twilio_form(f"CA{0xbe0000 + i:032x}", f) for i, f in enumerate(froms)]
    multi = [MultiDict(f) for f in forms]
    log = logging.getLogger("ivr.voice")
    out: dict[str, float] = {}

    def step(name: str, fn: Any, items: list[Any]) -> list[Any]:
        cpu = time.process_time()
        done = [fn(x) for x in items]
        out[name] = round((time.process_time() - cpu) / len(items) * 1e6, 1)
        return done

    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + "/voice/incoming"
    signed = [(f, validator.compute_signature(url, f)) for f in multi]
    step("signature check (both views)", lambda fs: validator.validate(url, *fs), signed)

    infos = step("CallInfo.parse (E.164)", calls.CallInfo.parse, forms)
    greetings = step("answer_incoming (the one round trip)",
                     lambda c: calls.answer_incoming(svc, c), infos)
    pairs = list(zip(infos, greetings, strict=True))
    step("log line 'call in'", lambda cp: log.info(
        "call in call_sid=%s from=%s tags=%s", cp[0].call_sid, mask(cp[0].phone),
        ",".join(cp[1].tags) or "-"), pairs)
    with app.test_request_context("/voice/incoming", method="POST"):
        # The view's TwiML part: everything after answer_incoming, through the Response.
        from ivr.voice import caller as voice

        build = getattr(voice, "greeting_twiml", None)
        if build is not None:
            step("TwiML + Response", lambda cp: build(svc, cp[1]), pairs)
        step("minimal: 1 pipeline (2 HGETALL)", lambda f: svc.redis.pipeline(
            transaction=False).hgetall(keys.customer(f["From"] or "unknown")).hgetall(
            keys.incidents_active()).execute(), forms)

        def minimal_twiml(_: Any) -> Any:
            vr = VoiceResponse()
            vr.say("お電話ありがとうございます。" * 4, voice="Polly.Mizuki", language="ja-JP")
            vr.enqueue("support", wait_url=callback_url("voice.queue_wait"),
                       wait_url_method="POST")
            return twiml(vr)

        step("minimal: TwiML + Response", minimal_twiml, forms)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--profile", type=int, default=0, help="show the N top functions")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with redis_url() as url, tempfile.TemporaryDirectory(prefix="ivr-bench-prof-") as tmp:
        os.environ.update(settings(url))
        from ivr import logs

        log_stream = open(Path(tmp) / "app.log", "w", encoding="utf-8")  # noqa: SIM115
        logs.configure("INFO", stream=log_stream)
        import bench_app

        app = bench_app.create_app()
        svc = app.extensions["ivr"]
        seeder = redis.Redis.from_url(url)
        seeder.flushdb()
        seed_customers(seeder, 0, 10_000)
        declare_incident(svc)
        seed_roster(svc)
        froms = CallerMix(list(range(10_000)), seed=5).take(args.calls * 2)
        results: dict[str, Any] = {}
        for target, path in TARGETS.items():
            reqs = environs(signed_requests(path, froms, len(results) + 1, "127.0.0.1:8000"))
            warm, timed = reqs[: args.calls // 5], reqs[args.calls: args.calls * 2]
            for env in warm:
                call(app, env)
            start, cpu = time.perf_counter(), time.process_time()
            for env in timed:
                call(app, env)
            wall, used = time.perf_counter() - start, time.process_time() - cpu
            results[target] = {"us_per_request": round(wall / len(timed) * 1e6, 1),
                               "cpu_us_per_request": round(used / len(timed) * 1e6, 1)}
            print(f"{target:<9} {results[target]['us_per_request']:8.1f} µs/request "
                  f"(cpu {results[target]['cpu_us_per_request']:.1f})", flush=True)
        inc, mini, stat = (results[t]["us_per_request"] for t in ("incoming", "minimal",
                                                                   "static"))
        cinc, cmini, cstat = (results[t]["cpu_us_per_request"] for t in ("incoming", "minimal",
                                                                          "static"))
        results["ratios"] = {"incoming/minimal by wall time": round(mini / inc, 3),
                             "incoming/static by wall time": round(stat / inc, 3),
                             "incoming/minimal by CPU": round(cmini / cinc, 3),
                             "incoming/static by CPU": round(cstat / cinc, 3)}
        print("throughput ratios in-process: " + ", ".join(
            f"{k} {v}" for k, v in results["ratios"].items()))
        results["steps_cpu_us"] = steps(app, svc, froms[: args.calls])
        for name, us in results["steps_cpu_us"].items():
            print(f"  {name:<34} {us:8.1f} µs")
        if args.profile:
            reqs = environs(signed_requests(TARGETS["incoming"], froms[: args.calls], 99,
                                            "127.0.0.1:8000"))
            svc.redis.delete(*[k for k in svc.redis.scan_iter("{ivr}:caller:*", count=10_000)]
                             or ["-"])
            profiler = cProfile.Profile()
            profiler.enable()
            for env in reqs:
                call(app, env)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats(args.profile * 2)
            print(out.getvalue())
        log_stream.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
