"""An incident storm (issue #5 item 4): many calls a second for minutes, a tenth of them asking
for a supervisor, an incident declared halfway, on a scaled-out deployment.

Run from the repository root (`bench/run --storm` runs it after the other benchmarks):
    .venv/bin/python -m bench.storm [--cps 30] [--minutes 5] [--customers 20000] [--no-write]

Everything runs on loopback, in processes of its own: a redis-server (or the empty database
of REDIS_URL), a fake Twilio REST API in this process (tests/fakes/twilio_api.py, reached
through TWILIO_API_BASE_URL), TWO web processes (`gunicorn -c gunicorn.conf.py
"ivr:create_app()"` as the Procfile runs it, each on its own port) and TWO
`rq worker -w worker.Worker --with-scheduler default sms`, all on that one Redis.

Before the storm, customers are imported through the admin API (a third not opted in to SMS,
one in twenty on a landline, about one in a hundred having texted 停止), and three
supervisors are put on call.

The storm is open loop: a scheduler starts one call every 1/cps s whatever the service does,
on a bounded pool of threads. Each call is ivr.dev.phone.Phone, which signs every webhook over
PUBLIC_BASE_URL as Twilio does and follows Gather, Redirect and Enqueue waitUrl; here each of
its requests goes to the next web process in turn (a load balancer) and is timed and checked.
Callers: 70 % known customers (each calls once), 20 % unknown numbers, 10 % withheld; 10 %
ask for a manager, the rest press 1 or 2, say something else or stay silent. A caller waiting
in the queue hangs up after a few seconds; one waiting for a supervisor holds longer
(--escalation-hold), and then the `completed` status callback is sent, as Twilio does.
Halfway, the incident is declared through POST /api/incidents with notify, so its first
report fans out by SMS while the calls keep coming.

At the deadline no new call starts; calls in flight, the hang-ups and the SMS fan-out get a
bounded time to finish. Then the checks: no webhook error (non-200, not TwiML, or the
degraded apology), every caller answered, calls started on schedule, the announcement heard
by exactly the calls after the declaration and the affected ones tagged, one SV dial-out per
escalation, and every affected opted-in customer messaged exactly once (the set computed here
from the seeded data and the incident's scope, cross-checked with the audience frozen in
Redis). The process exits 1 if any check fails.

With --redis-outage SECONDS the storm's own redis-server is saved, stopped and started
again that long at --outage-at (a fraction of the storm, 0.75). Callers must still be
answered throughout (the apology and the plain queue while Redis is away); answers, log
lines and calls in the outage window (plus OUTAGE_GRACE s) are judged by that promise
instead of the normal-path checks, and a check requires every queue's scheduler to be live
again afterwards (/metrics ivr_rq_scheduler_up) with no failed job.

The result goes into bench/RESULTS.md between the storm markers (bench/runner.py keeps that
section when it rewrites the file).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import (  # noqa: E402
    ADMIN_TOKEN,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    REGIONS,
    ROOT,
    app_config,
    children,
    customer_services,
    free_port,
    phone_of,
    private_redis_server,
    proc_cpu,
    reap,
    redis_cpu,
    redis_url,
    seed_roster,
    settings,
    unknown_phone,
    wait_for_redis,
    wait_until_up,
)
from rq import Worker  # noqa: E402
from rq.registry import StartedJobRegistry  # noqa: E402
from storm_checks import RESULTS, log_lines, markdown, report, verify, write_section  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from ivr import keys  # noqa: E402
from ivr.dev.phone import Input, Phone, PhoneError, Printer  # noqa: E402
from ivr.services import Services, build_services  # noqa: E402
from tests.fakes.twilio_api import FakeTwilio, FakeTwilioServer  # noqa: E402

SCOPE = {"services": ["tv"], "regions": ["naha"], "numbers": []}
"""The incident's scope: customers who use tv (1 in 10) or live in naha (1 in 8)."""
INCIDENT = {
    "title": "テレビ配信の障害",
    "severity": "major",
    "scope": SCOPE,
    "audience": "all",  # everyone hears it; the affected are tagged and get the SMS
    "announcement": {"ja": "現在、テレビ配信サービスがご覧になりにくい状況です。",
                     "en": "Our TV service is currently disrupted."},
    "eta": None,
    "notify": True,
}
# Manager requests from tests/intents/corpus.yaml (labels: manager only, so every one rings
# the manager ladder); checked against the app's own lexicon before the storm starts.
MANAGER = ("責任者を出してください", "上の人に代わって", "上長をお願いします",
           "スーパーバイザーに代わってください", "責任者と話させてもらえますか",
           "manager please", "let me speak to a supervisor")
OTHER_SPEECH = ("いつ復旧しますか", "テレビが見られないのですが", "when will it be fixed")
WITHHELD = ("anonymous", "+266696687", "")
OUTAGE_GRACE = 10.0  # seconds after Redis is back still judged as the outage (reconnects)


def landline_of(i: int) -> str:
    """A valid Tokyo landline: customers on one get no SMS (not mobile)."""
    return f"+8133{i:07d}"


@dataclass(frozen=True)
class Customer:
    """One seeded customer as this script wrote it, to compute who must get the SMS."""

    index: int
    phone: str
    services: tuple[str, ...]
    region: str
    sms_opt_in: bool
    mobile: bool
    stopped: bool  # texted 停止 before the storm: on the suppression list

    @property
    def affected(self) -> bool:
        """incident.applies() restated from the seed data: a service or the region in scope."""
        return bool(set(self.services) & set(SCOPE["services"])) \
            or self.region in SCOPE["regions"]

    @property
    def should_get_sms(self) -> bool:
        return self.affected and self.sms_opt_in and self.mobile and not self.stopped


def make_customers(n: int) -> list[Customer]:
    """A third not opted in, one in twenty on a landline, about 1 % texting 停止."""
    out = []
    for i in range(n):
        landline = i % 20 == 13
        out.append(Customer(index=i, phone=landline_of(i) if landline else phone_of(i),
                            services=customer_services(i), region=REGIONS[i % len(REGIONS)],
                            sms_opt_in=i % 3 != 2, mobile=not landline,
                            stopped=not landline and i % 97 == 5))
    return out


def customers_csv(customers: list[Customer]) -> bytes:
    """The CSV ops would import (POST /api/customers/import)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["phone", "name", "account_id", "tier", "services", "region", "language",
                     "sms_opt_in"])
    for c in customers:
        i = c.index
        writer.writerow([c.phone, f"顧客{i:07d}", f"A{i:08d}", "vip" if i % 20 == 3 else "standard",
                         ";".join(c.services), c.region, "en" if i % 10 == 7 else "ja",
                         "true" if c.sms_opt_in else "false"])
    return buf.getvalue().encode()


# --- the plan: who calls when, and what they do -------------------------------------------

@dataclass
class Call:
    """One planned call and, once it ran, what it saw."""

    index: int
    due: float  # seconds after the storm's start
    from_: str
    customer: Customer | None
    script: tuple[Input, ...]
    escalate: bool
    hold: float  # seconds the caller stays on the line after the simulator stops
    call_sid: str = ""
    started: float = 0.0  # monotonic time /voice/incoming was sent
    answered: bool = False
    announced: bool | None = None
    transferred: float | None = None  # monotonic time the conference answer came back
    outcome: str = ""
    error: str = ""
    hung_up: bool = False
    in_outage: bool = False  # started while Redis was away (--redis-outage)
    hangup_in_outage: bool = False  # its status callback was refused (503) while away


def plan_calls(cps: float, seconds: float, customers: list[Customer], seed: int,
               hold: tuple[float, float], escalation_hold: float) -> list[Call]:
    """Every call of the storm with its start time; exactly one in ten asks for a manager."""
    rng = random.Random(seed)
    pool = list(customers)
    rng.shuffle(pool)
    plans = []
    unknown = 0
    for i in range(int(cps * seconds)):
        r = rng.random()
        customer = None
        if r < 0.70 and pool:
            customer = pool.pop()
            from_ = customer.phone
        elif r < 0.90 or not pool:
            from_ = unknown_phone(unknown)
            unknown += 1
        else:
            from_ = rng.choice(WITHHELD)
        escalate = i % 10 == 7
        if escalate:
            script: tuple[Input, ...] = (Input("speech", rng.choice(MANAGER)),)
        else:
            pick = rng.random()
            script = ((Input("digits", "1"),) if pick < 0.4 else
                      (Input("digits", "2"),) if pick < 0.7 else
                      (Input("speech", rng.choice(OTHER_SPEECH)),) if pick < 0.8 else ())
        plans.append(Call(index=i, due=i / cps, from_=from_, customer=customer, script=script,
                          escalate=escalate,
                          hold=escalation_hold if escalate else rng.uniform(*hold)))
    return plans


# --- the fake Twilio, with arrival times ----------------------------------------------------

@dataclass
class TimedTwilio(FakeTwilio):
    """FakeTwilio that also notes when each call and message was created, so the delay from
    an escalation to its SV dial-out and the length of the fan-out can be measured."""

    created: list[tuple[float, str, dict[str, list[str]]]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # FakeTwilio reads it again
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path.endswith(("/Calls.json",
                                                                      "/Messages.json")):
            form = parse_qs(body.decode(), keep_blank_values=True)
            with self._lock:
                self.created.append((time.monotonic(), path.rsplit("/", 1)[1], form))
        return super().__call__(environ, start_response)


class TimedTwilioServer(FakeTwilioServer):
    """FakeTwilioServer serving a TimedTwilio."""

    def __init__(self) -> None:
        self.app = TimedTwilio()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.app.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


# --- the deployment: two web processes, two workers -----------------------------------------

class Deployment:
    """Two gunicorns and two RQ workers on one Redis, started as the Procfile starts them;
    they stay in this process group, so whoever stops this script stops them too."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.ports = [free_port(), free_port()]
        self.web: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("ab") as err:
            return subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=err)

    def start(self, rq_redis: redis.Redis) -> None:
        bin_dir = Path(sys.executable).parent
        for n, port in enumerate(self.ports):
            self.web.append(self._spawn(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                 f"127.0.0.1:{port}", "ivr:create_app()"], f"web{n + 1}"))
        rq = str(bin_dir / "rq") if (bin_dir / "rq").exists() else "rq"
        for n in range(2):
            self.workers.append(self._spawn(
                [rq, "worker", "-w", "worker.Worker", "--with-scheduler",
                 "--disable-job-desc-logging", "--url", self.env["REDIS_URL"], "default",
                 "sms"], f"worker{n + 1}"))
        deadline = time.monotonic() + 60
        for port, proc in zip(self.ports, self.web, strict=True):
            try:
                wait_until_up(f"http://127.0.0.1:{port}/readyz", proc, f"web on {port}",
                              timeout=deadline - time.monotonic())
            except RuntimeError as e:
                raise RuntimeError(f"{e}; see {self.logs}") from None
        while len(Worker.all(connection=rq_redis)) < 2:
            if any(p.poll() is not None for p in self.workers) or time.monotonic() > deadline:
                raise RuntimeError(f"the RQ workers did not start; see {self.logs}")
            time.sleep(0.1)

    @property
    def bases(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def pids(self) -> dict[str, list[int]]:
        return {"web": [p.pid for p in self.web], "workers": [p.pid for p in self.workers]}

    def log_sizes(self) -> dict[Path, int]:
        """How far each log has got: what the processes' own shutdown writes after this
        (RQ's "warm shut down requested") is not about the storm."""
        return {log: log.stat().st_size for log in self.logs}

    def stop(self) -> None:
        procs = self.workers + self.web
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            reap(proc, grace=15)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, including reaped ones (cutime): a
    gunicorn master with its workers, an RQ worker with every work horse it forked."""
    own = proc_cpu(pid, reaped_children=True)
    if own is None:
        return 0.0
    return own + sum(tree_cpu(c) for c in children(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


# --- the storm ------------------------------------------------------------------------------

def _quiet(_: str) -> None:
    """The simulator's transcript is not printed: thousands of calls run at once."""


@dataclass
class PathStats:
    """What one webhook path answered: latencies in ms, errors, degraded answers."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    degraded: int = 0
    degraded_in_outage: int = 0  # the apology while Redis was away: the promise, not a fault
    retry_in_outage: int = 0  # a status callback answered 503 (retry later) while away


class StormPhone(Phone):
    """A Phone whose every request goes to the next web process (round robin, as a load
    balancer without stickiness would) and is timed and checked when it comes back."""

    def __init__(self, storm: Storm, plan: Call) -> None:
        super().__init__(storm.bases[0], AUTH_TOKEN, plan.from_, public_url=PUBLIC_BASE_URL,
                         printer=Printer(write=_quiet), max_turns=12, timeout=15.0)
        self.storm, self.plan = storm, plan

    def _post(self, url: str, form: Mapping[str, str]) -> tuple[int, bytes, str]:
        self.base_url = self.storm.next_base()
        began = time.monotonic()
        path = urlsplit(url).path
        if path == "/voice/incoming":
            self.plan.started, self.plan.call_sid = began, self.call_sid
        if self.storm.in_outage(began):
            self.plan.in_outage = True
        try:
            status, body, mimetype = super()._post(url, form)
        except PhoneError as e:
            self.storm.note(self.plan, path, self.base_url, began, None, b"", "", str(e))
            raise
        self.storm.note(self.plan, path, self.base_url, began, status, body, mimetype)
        return status, body, mimetype

    def hang_up(self) -> None:
        """The caller hangs up: Twilio's `completed` status callback."""
        duration = str(max(1, round(time.monotonic() - self.plan.started)))
        try:
            began = time.monotonic()
            status, _, _ = self._post(self.public_url + "/voice/status",
                                      self._form("completed", CallDuration=duration))
            self.plan.hung_up = status == 200
            self.plan.hangup_in_outage = status == 503 and self.storm.in_outage(began)
        except PhoneError:
            pass  # counted by note()


class Storm:
    """Runs the planned calls against the deployment and gathers what every webhook said."""

    def __init__(self, args: argparse.Namespace, bases: list[str], svc: Services) -> None:
        self.args, self.bases, self.svc = args, bases, svc
        self._turn = 0
        self.lock = threading.Lock()
        self.paths: dict[str, PathStats] = {}
        self.by_base: Counter[str] = Counter()
        self.samples: list[str] = []
        self.apologies = {svc.prompts.render("apology", lang) for lang in ("ja", "en")}
        self.announcements = [" ".join(t.split()) for t in INCIDENT["announcement"].values()]
        self.hangups: list[tuple[float, int, StormPhone]] = []
        self.hangup_cv = threading.Condition()
        self.declared: dict[str, Any] = {}
        self.declare_sent = self.declare_done = 0.0
        self.t0 = 0.0
        self.lags: list[float] = []
        self.redis_server: Any = None  # PrivateRedis, with --redis-outage
        self.outage: tuple[float, float] | None = None  # monotonic, away and back
        self.outage_wall: tuple[float, float] | None = None  # the same in time.time()

    def take_redis_away(self) -> None:
        """--redis-outage: save, stop and restart the storm's redis-server."""
        began, wall = time.monotonic(), time.time()
        self.outage = (began, float("inf"))
        self.redis_server.outage(self.args.redis_outage)
        self.outage = (began, time.monotonic())
        self.outage_wall = (wall, time.time())
        print(f"storm: redis away for {self.outage[1] - began:.1f} s at "
              f"t={began - self.t0:.0f} s", flush=True)

    def in_outage(self, at: float) -> bool:
        """`at` (monotonic) falls in the outage window, widened by OUTAGE_GRACE s after."""
        return self.outage is not None and \
            self.outage[0] - 1.0 <= at <= self.outage[1] + OUTAGE_GRACE

    def next_base(self) -> str:
        with self.lock:
            self._turn += 1
            return self.bases[self._turn % len(self.bases)]

    def note(self, plan: Call, path: str, base: str, began: float, status: int | None,
             body: bytes, mimetype: str, failure: str = "") -> None:
        """Check one answer as Twilio would take it: 200, TwiML that parses, and not the
        degraded apology; for the call's first answer also whether it greets and announces."""
        ms = (time.monotonic() - began) * 1000
        problem = failure
        root = None
        retry_later = (status == 503 and path == "/voice/status" and self.in_outage(began))
        if not problem and status != 200 and not retry_later:
            problem = f"HTTP {status}"
        if not problem and retry_later:
            pass  # Twilio is asked to send it again; nothing to parse
        elif not problem and mimetype not in ("text/xml", "application/xml"):
            problem = f"answered {mimetype}"
        if not problem and not retry_later:
            try:
                root = ET.fromstring(body)
            except ET.ParseError as e:
                problem = f"TwiML does not parse: {e}"
        if root is not None and root.tag != "Response":
            problem, root = f"<{root.tag}>, not <Response>", None
        said = [" ".join((el.text or "").split()) for el in root.iter("Say")] if root else []
        degraded = any(text in self.apologies for text in said)
        if root is not None and path == "/voice/incoming":
            plan.answered = any(True for el in root.iter() if el.tag in ("Say", "Play"))
            plan.announced = any(a in text for text in said for a in self.announcements)
        if root is not None and path == "/voice/gather" and any(
                el.tag == "Conference" for el in root.iter()):
            plan.transferred = time.monotonic()
        with self.lock:
            stats = self.paths.setdefault(path, PathStats())
            stats.latencies.append(ms)
            self.by_base[base] += 1
            if problem:
                stats.errors += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{path}: {problem}"[:200])
            if retry_later:
                stats.retry_in_outage += 1
            if degraded and self.in_outage(began):
                stats.degraded_in_outage += 1
            elif degraded:
                stats.degraded += 1

    def one_call(self, plan: Call) -> None:
        self.lags.append(time.monotonic() - (self.t0 + plan.due))
        phone = StormPhone(self, plan)
        try:
            result = phone.call(plan.script, hang_up=False)
            plan.outcome = result.outcome
        except Exception as e:  # a bug here must not stop the storm; it is reported
            plan.outcome, plan.error = "error", f"{type(e).__name__}: {e}"
        hold = plan.hold if plan.outcome in ("queue", "conference") else 0.0
        with self.hangup_cv:
            heapq.heappush(self.hangups, (time.monotonic() + hold, plan.index, phone))
            self.hangup_cv.notify()

    def hang_up_loop(self, pool: ThreadPoolExecutor, stop: threading.Event,
                     futures: list[Future[None]]) -> None:
        """Send each caller's status callback when their hold is over."""
        while True:
            with self.hangup_cv:
                while True:
                    now = time.monotonic()
                    if self.hangups and self.hangups[0][0] <= now:
                        _, _, phone = heapq.heappop(self.hangups)
                        break
                    if stop.is_set() and not self.hangups:
                        return
                    wait = self.hangups[0][0] - now if self.hangups else 0.2
                    self.hangup_cv.wait(min(wait, 0.2))
            futures.append(pool.submit(phone.hang_up))

    def declare(self) -> None:
        """Declare the incident through the admin API, as an SV would mid-storm."""
        body = json.dumps(INCIDENT, ensure_ascii=False).encode()
        request = urllib.request.Request(
            self.next_base() + "/api/incidents", data=body, method="POST",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                     "Content-Type": "application/json"})
        self.declare_sent = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                self.declared = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.declared = {"error": str(e)}
        self.declare_done = time.monotonic()

    def run(self, plans: list[Call], snapshot: Callable[[], dict[str, float]]
            ) -> dict[str, Any]:
        """Start every call on its slot (open loop), declare halfway, then wait a bounded
        time for the calls in flight and the hang-ups. `snapshot` is called when the first
        call starts and after the last one, to measure the CPU of the issuing window."""
        seconds = self.args.minutes * 60
        calls_pool = ThreadPoolExecutor(self.args.threads, thread_name_prefix="call")
        hangup_pool = ThreadPoolExecutor(8, thread_name_prefix="hangup")
        stop = threading.Event()
        call_futures: list[Future[None]] = []
        hangup_futures: list[Future[None]] = []
        hanger = threading.Thread(target=self.hang_up_loop,
                                  args=(hangup_pool, stop, hangup_futures), daemon=True)
        cpu0 = snapshot()
        self.t0 = time.monotonic()
        declarer = threading.Timer(seconds / 2, self.declare)
        declarer.start()
        if self.args.redis_outage:
            threading.Timer(seconds * self.args.outage_at, self.take_redis_away).start()
        hanger.start()
        next_report = 30.0
        for plan in plans:
            due = self.t0 + plan.due
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, 0.05))
            if now - self.t0 > seconds:
                break
            call_futures.append(calls_pool.submit(self.one_call, plan))
            if plan.due >= next_report:
                self.progress(plan.due, call_futures)
                next_report += 30.0
        issued_for = time.monotonic() - self.t0
        cpu1 = snapshot()
        declarer.join(30)
        _, pending = wait_futures(call_futures, timeout=self.args.drain)
        stop.set()
        hanger.join(self.args.escalation_hold + self.args.drain)
        _, hang_pending = wait_futures(hangup_futures, timeout=30)
        calls_pool.shutdown(wait=False, cancel_futures=True)
        hangup_pool.shutdown(wait=False, cancel_futures=True)
        return {"issued_for": issued_for, "started": len(call_futures),
                "unfinished_calls": len(pending), "unfinished_hangups": len(hang_pending),
                "cpu": {k: (cpu1[k] - cpu0[k]) / issued_for for k in cpu0
                        if k not in ("busy", "total")},
                "machine_busy": (cpu1["busy"] - cpu0["busy"])
                / max(cpu1["total"] - cpu0["total"], 1.0)}

    def progress(self, at: float, futures: list[Future[None]]) -> None:
        """A line every 30 s, so a long run shows early when it goes wrong."""
        with self.lock:
            hits = sum(len(s.latencies) for s in self.paths.values())
            errors = sum(s.errors + s.degraded for s in self.paths.values())
        running = sum(1 for f in futures if not f.done())
        lag = max(self.lags[-200:], default=0.0)
        print(f"  t={at:5.0f} s  calls {len(futures):6}  in flight {running:4}  webhooks "
              f"{hits:7}  errors {errors}  recent start lag max {lag * 1000:.0f} ms", flush=True)


# --- setup, checks, report -----------------------------------------------------------------

def scheduler_up(base: str) -> dict[str, float]:
    """ivr_rq_scheduler_up per queue, from the web's /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=15) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("ivr_rq_scheduler_up{"):
            labels, _, value = line.rpartition(" ")
            found[labels.split('queue="')[1].split('"')[0]] = float(value)
    return found


def api(base: str, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json", timeout: float = 60) -> Any:
    """One admin API request with the bootstrap token; the JSON answer."""
    request = urllib.request.Request(base + path, data=body, method=method, headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def seed(bases: list[str], svc: Services, customers: list[Customer]) -> float:
    """Import the customers through the admin API, put three SVs on call, and have the
    customers who opted out text 停止 through /sms/incoming. Returns the seconds it took."""
    began = time.monotonic()
    for lo in range(0, len(customers), 5000):  # well inside the web's 15 s per request
        got = api(bases[0], "POST", "/api/customers/import",
                  customers_csv(customers[lo:lo + 5000]), "text/csv; charset=utf-8")
        if got.get("imported") != len(customers[lo:lo + 5000]):
            raise RuntimeError(f"customer import answered {got}")
    if svc.redis.scard(keys.customers_all()) != len(customers):
        raise RuntimeError("the customer index does not hold every imported customer")
    seed_roster(svc)
    stoppers = [c for c in customers if c.stopped]

    def stop_sms(c: Customer) -> None:
        phone = Phone(bases[c.index % 2], AUTH_TOKEN, c.phone, public_url=PUBLIC_BASE_URL,
                      printer=Printer(write=_quiet))
        phone.text("停止")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(stop_sms, stoppers))
    suppressed = svc.redis.smembers(keys.sms_optout())
    missing = [c.phone for c in stoppers if c.phone not in suppressed]
    if missing:
        raise RuntimeError(f"{len(missing)} 停止 texts did not reach the suppression list")
    return time.monotonic() - began


def check_inputs(svc: Services) -> None:
    """The escalation utterances must still be manager requests to the app's lexicon, and
    the others must not, or the storm would not measure what it says."""
    for text in MANAGER:
        intent = svc.lexicon.classify(text)
        if not intent.wants_manager or intent.labels & {"money", "technical"}:
            raise RuntimeError(f"the lexicon no longer reads {text!r} as a manager request")
    for text in OTHER_SPEECH:
        if svc.lexicon.classify(text).wants_manager:
            raise RuntimeError(f"the lexicon reads {text!r} as a manager request")


def wait_for_jobs(svc: Services, limit: float, quiet: float = 1.5) -> float:
    """Wait until both queues are empty and no job is running for `quiet` s in a row, at
    most `limit` s; return how long it took (scheduled jobs, e.g. the sweep, are left)."""
    began = time.monotonic()
    queues = [svc.queue, svc.sms_queue]
    idle_since: float | None = None
    while time.monotonic() - began < limit:
        busy = sum(q.count + StartedJobRegistry(queue=q).count for q in queues)
        now = time.monotonic()
        if busy:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= quiet:
            return idle_since - began
        time.sleep(0.5)
    return time.monotonic() - began


@contextmanager
def terminated_cleanly() -> Iterator[None]:
    """SIGTERM (bench/run's time limit, a test's timeout) unwinds like Ctrl-C, so the
    servers started here are stopped by the `finally` blocks."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cps", type=float, default=30.0, help="new calls per second (30)")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long calls start (5)")
    parser.add_argument("--customers", type=int, default=20_000, help="customers (20,000)")
    parser.add_argument("--threads", type=int, default=64,
                        help="most calls in progress at once in the load generator (64)")
    parser.add_argument("--hold", type=float, nargs=2, default=(2.0, 8.0),
                        metavar=("MIN", "MAX"), help="queued callers hang up after (2-8 s)")
    parser.add_argument("--escalation-hold", type=float, default=40.0,
                        help="seconds a caller waits for a supervisor before hanging up (40)")
    parser.add_argument("--sms-mps", type=float, default=100.0,
                        help="IVR_SMS_MPS, SMS segments per second (100)")
    parser.add_argument("--drain", type=float, default=180.0,
                        help="most seconds to wait for calls in flight and for the jobs (180)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--redis-outage", type=float, default=0.0, metavar="SECONDS",
                        help="stop the storm's redis-server this long mid-storm (0: no outage)")
    parser.add_argument("--outage-at", type=float, default=0.75, metavar="FRACTION",
                        help="when the outage begins, as a fraction of the storm (0.75)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.redis_outage and os.environ.get("REDIS_URL"):
        parser.error("--redis-outage stops the storm's own redis-server: unset REDIS_URL")
    if args.redis_outage and not 0.5 < args.outage_at < 1.0:
        parser.error("--outage-at must fall after the declaration (0.5) and before the end")
    command = " ".join([".venv/bin/python -m bench.storm", *(
        a for a in (argv if argv is not None else sys.argv[1:]))])
    if args.json:
        command = command.replace(f" --json {args.json}", "")
    started_at = datetime.now(UTC)
    began = time.monotonic()
    from runner import machine

    info = machine()
    customers = make_customers(args.customers)
    plans = plan_calls(args.cps, args.minutes * 60, customers, args.seed, tuple(args.hold),
                       args.escalation_hold)
    web = (f"{os.environ.get('WEB_CONCURRENCY', '2')} workers x "
           f"{os.environ.get('GUNICORN_THREADS', '4')} threads each")
    used = {"cps": args.cps, "minutes": args.minutes, "customers": args.customers,
            "threads": args.threads, "hold": list(args.hold),
            "escalation_hold": args.escalation_hold, "sms_mps": args.sms_mps, "web": web}
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake's request lines
    server_running = private_redis_server() if args.redis_outage else nullcontext(None)
    with terminated_cleanly(), server_running as server, \
            (nullcontext(server.url) if server else redis_url()) as url, \
            TimedTwilioServer() as fake, tempfile.TemporaryDirectory(prefix="ivr-storm-") as tmp:
        wait_for_redis(url)
        env = {**os.environ, **settings(url, TWILIO_API_BASE_URL=fake.url,
                                        IVR_SMS_MPS=args.sms_mps, IVR_LOG_LEVEL="INFO")}
        for name in ("PORT", "IVR_QUEUE_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(name, None)
        svc = build_services({**app_config(url), "IVR_SMS_MPS": args.sms_mps},
                             redis_timeout=10.0)
        svc.redis.flushdb()
        check_inputs(svc)
        deployment = Deployment(env, Path(tmp))
        try:
            up = time.monotonic()
            deployment.start(svc.rq_redis)
            print(f"storm: 2 web processes and 2 workers up in {time.monotonic() - up:.1f} s",
                  flush=True)
            took = seed(deployment.bases, svc, customers)
            print(f"storm: {args.customers:,} customers and the roster seeded in {took:.1f} s; "
                  f"{len(plans):,} calls over {args.minutes:g} min at {args.cps:g}/s, web on "
                  f"{deployment.ports}, 2 RQ workers", flush=True)
            storm = Storm(args, deployment.bases, svc)
            storm.redis_server = server
            pids = deployment.pids()

            def snapshot() -> dict[str, float]:
                busy, total = machine_busy()
                return {"web": sum(tree_cpu(p) for p in pids["web"]),
                        "workers": sum(tree_cpu(p) for p in pids["workers"]),
                        "redis": redis_cpu(svc.redis),
                        "load generator": time.process_time(), "busy": busy, "total": total}

            run = storm.run(plans, snapshot)
            print(f"storm: calls issued for {run['issued_for']:.0f} s; waiting for the jobs",
                  flush=True)
            seen = {"jobs_seconds": wait_for_jobs(svc, args.drain),
                    "sv_phones": {s["phone"] for s in api(deployment.bases[0], "GET",
                                                          "/api/supervisors")["supervisors"]},
                    "counters": api(deployment.bases[1], "GET",
                                    f"/api/incidents/{storm.declared['id']}")["counters"]
                    if storm.declared.get("id") else {},
                    "scheduler_up": scheduler_up(deployment.bases[0])}
            sizes = deployment.log_sizes()
        finally:
            deployment.stop()
        cpu = {"share_of_core": run["cpu"], "machine_busy": run["machine_busy"],
               "cpus": os.cpu_count()}
        logs = log_lines(sizes, excused=storm.outage_wall and (
            storm.outage_wall[0] - 1.0, storm.outage_wall[1] + OUTAGE_GRACE))
        checks, figures = verify(storm, plans, run, fake, svc, customers, seen, logs)
        figures["unfinished"] = {"calls": run["unfinished_calls"],
                                 "hangups": run["unfinished_hangups"]}
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    seconds = time.monotonic() - began
    print("\n== incident storm\n" + report(checks, figures, cpu), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"checks": [c.__dict__ for c in checks],
                                         "figures": figures, "cpu": cpu, "settings": used},
                                        indent=2, ensure_ascii=False))
    if not args.no_write:
        write_section(markdown(checks, figures, cpu, info, command, started_at, seconds, used))
        print(f"\nwrote the storm section of {RESULTS.relative_to(ROOT)} ({seconds:.0f} s)")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
