"""The checks of the incident storm (bench/storm.py) and how its results are written.

Everything is judged from outside the service: what each caller heard (recorded by the storm
as the answers came back), what the fake Twilio was asked to do, what the admin API answers,
and what Redis holds, read through ivr/keys.py and ivr.call like the service itself does.
bench/runner.py imports START_MARK/END_MARK to keep the storm section of RESULTS.md.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rq.registry import FailedJobRegistry  # noqa: E402

from ivr import call as calls  # noqa: E402
from ivr import keys  # noqa: E402
from ivr.segments import segments  # noqa: E402

if TYPE_CHECKING:
    from storm import Call, Customer, Storm, TimedTwilio

    from ivr.services import Services

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START_MARK, END_MARK = "<!-- storm:start -->", "<!-- storm:end -->"
# Hand-written notes on reading the figures (moved from the README); bench/run keeps them.
NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def log_lines(sizes: dict[Path, int], excused: tuple[float, float] | None = None
              ) -> dict[str, Counter[str]]:
    """WARNING and worse lines of the JSON logs up to the given sizes, by log (web, worker),
    level and the message's first words; lines stamped inside `excused` (time.time() from,
    to: a Redis outage) are counted under "outage" instead."""
    found: dict[str, Counter[str]] = {}
    for path, size in sizes.items():
        name = path.stem.rstrip("0123456789")
        with path.open("rb") as f:
            data = f.read(size)
        for line in data.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level = entry.get("level") if isinstance(entry, dict) else None
            if level in ("WARNING", "ERROR", "CRITICAL"):
                msg = " ".join(str(entry.get("msg", "")).split()[:4])
                found.setdefault("outage" if excused and excused[0] <= _epoch(entry)
                                 <= excused[1] else name, Counter())[f"{level} {msg}"] += 1
    return found


def _epoch(entry: dict[str, Any]) -> float:
    """The line's "ts" (ivr.logs: 2026-11-23T22:15:07.123Z) as time.time()."""
    try:
        return datetime.strptime(str(entry.get("ts")), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Check:
    """One line of the verdict table."""

    what: str
    target: str
    measured: str
    ok: bool


def verify(storm: Storm, plans: list[Call], run: dict[str, Any], fake: TimedTwilio,
           svc: Services, customers: list[Customer], seen: dict[str, Any],
           logs: dict[str, Counter[str]]) -> tuple[list[Check], dict[str, Any]]:
    """Every check of the issue, from what the callers heard, what Twilio was asked to do
    and what Redis holds. `seen` is what was read before the deployment stopped: the
    incident's counters (admin API), the roster's numbers, how long the jobs took."""
    started = [p for p in plans if p.started]
    figures: dict[str, Any] = {"incident_counters": seen["counters"]}
    checks = (check_answers(storm, plans, run, svc, logs, figures)
              + check_outage(storm, started, seen, logs, figures)
              + check_incident(storm, started, svc, seen["counters"], figures)
              + check_escalations(storm, started, fake, seen["sv_phones"], figures)
              + check_sms(storm, customers, fake, svc, seen, figures))
    figures["latency_ms"] = {
        path: {"count": len(s.latencies), "p50": round(pct(s.latencies, .5), 1),
               "p95": round(pct(s.latencies, .95), 1), "p99": round(pct(s.latencies, .99), 1),
               "max": round(max(s.latencies, default=0.0), 1), "errors": s.errors}
        for path, s in sorted(storm.paths.items())}
    figures["by_web_process"] = dict(storm.by_base)
    figures["outcomes"] = dict(Counter(p.outcome for p in started))
    figures["log_warnings"] = {k: dict(v) for k, v in logs.items()}
    figures["error_samples"] = storm.samples + [p.error for p in plans if p.error][:5]
    return checks, figures


def check_answers(storm: Storm, plans: list[Call], run: dict[str, Any], svc: Services,
                  logs: dict[str, Counter[str]], figures: dict[str, Any]) -> list[Check]:
    """Zero webhook errors, every caller answered, every call on its slot and hung up."""
    args = storm.args
    started = [p for p in plans if p.started]
    planned = int(args.cps * args.minutes * 60)
    answers = sum(len(s.latencies) for s in storm.paths.values())
    errors = sum(s.errors for s in storm.paths.values()) + sum(1 for p in plans if p.error)
    degraded = sum(s.degraded for s in storm.paths.values())
    web_lines = sum(logs.get("web", Counter()).values())
    worker_errors = sum(n for line, n in logs.get("worker", Counter()).items()
                        if not line.startswith("WARNING"))
    failed_jobs = sum(FailedJobRegistry(queue=q).count for q in (svc.sms_queue, svc.queue))
    answered = sum(1 for p in started if p.answered)
    hung = sum(1 for p in started if p.hung_up)
    refused = sum(1 for p in started if p.hangup_in_outage)  # 503 while Redis was away
    lags = storm.lags
    late = sum(1 for x in lags if x > 1.0)
    rate = len(started) / run["issued_for"] if run["issued_for"] else 0.0
    figures.update(webhook_answers=answers, webhook_errors=errors, degraded=degraded,
                   calls_started=len(started), calls_answered=answered,
                   calls_per_second=round(rate, 2),
                   start_lag_p50_ms=round(pct(lags, .5) * 1e3),
                   start_lag_p99_ms=round(pct(lags, .99) * 1e3),
                   start_lag_max_ms=round(max(lags, default=0) * 1e3))
    sample = f" (e.g. {storm.samples[0]})" if storm.samples else ""
    return [
        Check("webhook answers", "all 200 TwiML", f"{answers:,} answers, {errors} errors{sample}",
              errors == 0),
        Check("degraded answers (the apology)", "0", str(degraded), degraded == 0),
        Check("web log warnings and errors", "0", str(web_lines), web_lines == 0),
        Check("worker errors and failed jobs", "0",
              f"{worker_errors} error lines, {failed_jobs} failed jobs",
              worker_errors == 0 and failed_jobs == 0),
        Check("callers answered (first answer speaks)", "every caller",
              f"{answered:,} of {len(started):,} started ({planned:,} planned)",
              answered == len(started) == planned),
        Check("calls started on schedule", f"{args.cps:g}/s, each within 1 s of its slot",
              f"{rate:.2f}/s; start lag p50 {figures['start_lag_p50_ms']} ms, p99 "
              f"{figures['start_lag_p99_ms']} ms, max {figures['start_lag_max_ms']} ms; "
              f"{late} late", late == 0 and rate >= args.cps * 0.98),
        Check("status callbacks (completed)", "one per call",
              f"{hung:,} of {len(started):,}" + (f" ({refused} refused in the outage)"
                                                  if refused else ""),
              hung + refused == len(started)),
    ]


def check_outage(storm: Storm, started: list[Call], seen: dict[str, Any],
                 logs: dict[str, Counter[str]], figures: dict[str, Any]) -> list[Check]:
    """--redis-outage: the callers in the window were answered (check_answers counts them
    with the rest), and the scheduler is live again on every queue afterwards."""
    if storm.outage is None:
        return []
    away = storm.outage[1] - storm.outage[0]
    during = [p for p in started if p.in_outage]
    apologies = sum(s.degraded_in_outage for s in storm.paths.values())
    up = seen.get("scheduler_up", {})
    figures.update(outage_seconds=round(away, 1), calls_in_outage=len(during),
                   degraded_in_outage=apologies,
                   outage_log_lines=sum(logs.get("outage", Counter()).values()),
                   scheduler_up=up)
    return [
        Check("Redis outage: callers in it answered", "every caller",
              f"{sum(1 for p in during if p.answered)} of {len(during)} "
              f"({apologies} apologies) in {away:.1f} s away",
              all(p.answered for p in during)),
        Check("scheduler live again after it (ivr_rq_scheduler_up)", "1 on every queue",
              str(up), bool(up) and all(v == 1 for v in up.values())),
    ]


def check_incident(storm: Storm, started: list[Call], svc: Services,
                   counters: dict[str, Any], figures: dict[str, Any]) -> list[Check]:
    """The declaration mid-storm: announced to exactly the calls after it, the affected
    callers tagged (read back from their call records), and the incident's counters."""
    incident_id = storm.declared.get("id", "")
    # calls in a Redis outage (--redis-outage) heard the apology: judged in check_outage
    before = {p.index for p in started if p.started < storm.declare_sent and not p.in_outage}
    after = {p.index for p in started if p.started > storm.declare_done and not p.in_outage}
    heard_before = sum(1 for p in started if p.index in before and p.announced)
    missed_after = sum(1 for p in started if p.index in after and not p.announced)
    wrong_tags = tagged = 0
    for p in started:
        record = calls.get(svc, p.call_sid) if p.call_sid else None
        affected = record is not None and "affected" in record["tags"]
        tagged += affected
        if p.index in before or p.index in after:
            should = p.index in after and p.customer is not None and p.customer.affected
            wrong_tags += record is None or affected != should
    figures.update(calls_before=len(before), calls_after=len(after), affected_tagged=tagged,
                   declared_at_s=round(storm.declare_done - storm.t0, 1))
    return [
        Check("incident declared mid-storm (POST /api/incidents)", "201",
              f"{incident_id or storm.declared.get('error')} after "
              f"{storm.declare_sent - storm.t0:.0f} s, answered in "
              f"{(storm.declare_done - storm.declare_sent) * 1000:.0f} ms", bool(incident_id)),
        Check("announcement", "none before the declaration, every call after",
              f"{heard_before} of {len(before):,} before heard it, {missed_after} of "
              f"{len(after):,} after missed it ({len(started) - len(before) - len(after)} "
              "in between, not judged)",
              heard_before == 0 and missed_after == 0 and bool(after)),
        Check("affected callers tagged", "exactly the affected customers after it",
              f"{tagged:,} tagged, {wrong_tags} wrong", wrong_tags == 0),
        Check("incident counter affected_calls", "= calls tagged affected",
              f"{counters.get('affected_calls')} (calls {counters.get('calls')})",
              int(counters.get("affected_calls", -1)) == tagged),
    ]


def check_escalations(storm: Storm, started: list[Call], fake: TimedTwilio,
                      sv_phones: set[str], figures: dict[str, Any]) -> list[Check]:
    """Each manager request heard the transfer and rang exactly one SV first (the
    `attempt=0` leg of calls.create, found by the call's CallSid in its URL)."""
    asked = [p for p in started if p.escalate and not p.in_outage]
    transferred = [p for p in asked if p.transferred is not None]
    legs: dict[tuple[str, str], list[float]] = {}
    other_calls = 0
    for at, kind, form in list(fake.created):
        if kind != "Calls.json":
            continue
        query = parse_qs(urlsplit(form.get("Url", [""])[0]).query)
        sid, attempt = query.get("call", [""])[0], query.get("attempt", [""])[0]
        if form.get("To", [""])[0] not in sv_phones or not sid:
            other_calls += 1
            continue
        legs.setdefault((sid, attempt), []).append(at)
    firsts = {sid: times[0] for (sid, attempt), times in legs.items() if attempt == "0"}
    asked_sids = {p.call_sid for p in started if p.escalate}
    missing = sum(1 for p in asked if p.call_sid not in firsts)
    doubled = sum(1 for (_, attempt), times in legs.items() if attempt == "0" and len(times) > 1)
    stray = sum(1 for sid in firsts if sid not in asked_sids)
    later = sum(len(t) for (_, attempt), t in legs.items() if attempt != "0")
    # (seconds into the storm, escalation to dial-out or None): the SMS fan-out's effect
    timeline = [(p.transferred - storm.t0, firsts[p.call_sid] - p.transferred
                 if p.call_sid in firsts else None)
                for p in transferred if p.transferred is not None]
    waits = [d for _, d in timeline if d is not None]
    figures.update(escalations_asked=len(asked), escalations_transferred=len(transferred),
                   sv_dial_outs_first=len(firsts), sv_dial_outs_missing=missing,
                   sv_dial_outs_later=later, dial_delay_p50_s=round(pct(waits, .5), 2),
                   dial_delay_max_s=round(max(waits, default=0.0), 2),
                   dial_delays=[[round(t, 1), None if d is None else round(d, 2)]
                                for t, d in timeline])
    return [
        Check("escalations (10 % ask for a manager)", "each one transferred",
              f"{len(transferred):,} of {len(asked):,} heard the transfer",
              len(transferred) == len(asked) and bool(asked)),
        Check("SV dial-outs (calls.create, attempt 0)", "exactly one per escalation",
              f"{len(firsts):,} for {len(asked):,} escalations: {missing} missing, {doubled} "
              f"doubled, {stray} for calls that did not ask, {other_calls} to other numbers; "
              f"{later} later attempts; escalation to dial-out p50 "
              f"{figures['dial_delay_p50_s']} s, max {figures['dial_delay_max_s']} s",
              not missing and not doubled and not stray and not other_calls),
    ]


def check_sms(storm: Storm, customers: list[Customer], fake: TimedTwilio, svc: Services,
              seen: dict[str, Any], figures: dict[str, Any]) -> list[Check]:
    """The first report: who must get it is computed here from the seeded customers and the
    incident's scope, then compared with the audience the fan-out froze in Redis and with
    every message the fake Twilio accepted."""
    incident_id = storm.declared.get("id", "")
    sv_phones, counters = seen["sv_phones"], seen["counters"]
    expected = {c.phone for c in customers if c.should_get_sms}
    affected = {c.phone for c in customers if c.affected}
    seq = next((e["seq"] for e in storm.declared.get("timeline", [])
                if e.get("kind") == "declared"), 0)
    frozen = svc.redis.smembers(keys.sms_audience(incident_id, seq)) if incident_id else set()
    subscribers = svc.redis.smembers(keys.incident_subscribers(incident_id)) \
        if incident_id else set()
    sent = [(at, form) for at, kind, form in list(fake.created) if kind == "Messages.json"
            and form.get("To", [""])[0] not in sv_phones]
    to = Counter(form.get("To", [""])[0] for _, form in sent)
    dupes = sum(1 for n in to.values() if n > 1)
    never = expected - set(to)
    extra = set(to) - expected
    title = storm.declared.get("title", "?")
    other_body = sum(1 for _, form in sent if title not in form.get("Body", [""])[0])
    last = max((at for at, _ in sent), default=storm.declare_done)
    seg = [segments(form.get("Body", [""])[0]).count for _, form in sent]
    figures.update(sms_audience=len(frozen), sms_expected=len(expected), sms_sent=len(sent),
                   sms_segments_per_message=round(statistics.mean(seg), 2) if seg else 0,
                   sms_fan_out_seconds=round(last - storm.declare_done, 1),
                   jobs_idle_after_s=round(seen["jobs_seconds"], 1))
    return [
        Check("SMS audience frozen in Redis", "= the affected customers (seed data)",
              f"{len(frozen):,} frozen, {len(affected):,} affected, "
              f"{len(frozen - affected - subscribers)} extra, {len(affected - frozen)} missing",
              bool(frozen) and frozen == affected | subscribers),
        Check("first-report SMS", "each affected opted-in customer exactly once",
              f"{len(sent):,} messages for {len(expected):,} expected: {len(never)} never "
              f"messaged, {len(extra)} not expected, {dupes} duplicated, {other_body} other "
              f"bodies; the last {figures['sms_fan_out_seconds']} s after the declaration",
              not never and not extra and not dupes and not other_body
              and len(sent) == len(expected)),
        Check("incident counter sms_sent", "= messages accepted by Twilio",
              str(counters.get("sms_sent")), int(counters.get("sms_sent", -1)) == len(sent)),
    ]


def report(checks: list[Check], figures: dict[str, Any], cpu: dict[str, Any]) -> str:
    """The plain-text summary printed at the end."""
    width = max(len(c.what) for c in checks)
    lines = [f"{c.what:<{width}}  {'ok  ' if c.ok else 'FAIL'}  {c.measured}" for c in checks]
    lines.append("")
    lines.append(f"{'webhook':<24} {'count':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
                 f"{'max ms':>8} {'errors':>6}")
    for path, r in figures["latency_ms"].items():
        lines.append(f"{path:<24} {r['count']:>7} {r['p50']:>8} {r['p95']:>8} {r['p99']:>8} "
                     f"{r['max']:>8} {r['errors']:>6}")
    lines.append("")
    lines.append("CPU during the storm (share of one core): " + ", ".join(
        f"{k} {v:.0%}" for k, v in cpu["share_of_core"].items())
        + f"; machine busy {cpu['machine_busy']:.0%} of {cpu['cpus']} CPUs")
    return "\n".join(lines)


def markdown(checks: list[Check], figures: dict[str, Any], cpu: dict[str, Any],
             info: dict[str, Any], command: str, started: datetime, seconds: float,
             settings_used: dict[str, Any]) -> str:
    """The "## Incident storm" section of bench/RESULTS.md, markers included."""
    ok = all(c.ok for c in checks)
    out = [START_MARK, "## Incident storm", "",
           f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC, in {seconds:.0f} s; "
           f"**{'every check passed' if ok else 'SOME CHECKS FAILED'}**. "
           "`bench/run --storm` runs it after the other benchmarks; `bench/run` alone keeps "
           "this section as it is.", "",
           f"- Machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; Linux "
           f"{info['kernel']}; Python {info['python']}, redis-server {info['redis_server']}, "
           f"gunicorn {info['gunicorn']}, twilio {info['twilio']}; commit {info['commit']}",
           f"- Load average before / after: {info['load_before']} / {info['load_after']}",
           "- Deployment, all on 127.0.0.1: one redis-server; two web processes, each "
           f"`gunicorn -c gunicorn.conf.py \"ivr:create_app()\"` ({settings_used['web']}); two "
           "`rq worker -w worker.Worker --with-scheduler --disable-job-desc-logging default "
           f"sms`; the fake Twilio REST API (tests/fakes) in the load generator's process. "
           f"IVR_SMS_MPS={settings_used['sms_mps']:g}, log level INFO.",
           f"- Load: {settings_used['cps']:g} new calls/s for {settings_used['minutes']:g} min, "
           f"open loop (a call starts on its slot whatever the service does; at most "
           f"{settings_used['threads']} calls in progress), each driven by ivr.dev.phone.Phone "
           "(signed webhooks, Gather, Redirect, Enqueue waitUrl), every request to the next "
           "web process in turn. 70 % known customers (each calls once), 20 % unknown, 10 % "
           "withheld; every tenth call asks for a manager (utterances from "
           "tests/intents/corpus.yaml), the others press 1 or 2, say something else or stay "
           f"silent. Queued callers hang up after {settings_used['hold'][0]:g}-"
           f"{settings_used['hold'][1]:g} s, callers waiting for an SV after "
           f"{settings_used['escalation_hold']:g} s (below the 60 s join timeout), then the "
           "`completed` status callback.",
           f"- Data: {settings_used['customers']:,} customers imported through "
           "POST /api/customers/import (a third not opted in to SMS, one in twenty on a "
           "landline, about 1 % texted 停止 first), three SVs on call. Halfway, "
           "POST /api/incidents declares a major incident on the tv service and the naha region "
           "(audience all, notify): its first report fans out while the calls go on.", "",
           "| check | target | measured | |", "|---|---|---|---|"]
    out += [f"| {c.what} | {c.target} | {c.measured} | {'met' if c.ok else 'NOT met'} |"
            for c in checks]
    out += ["", "| webhook | answers | p50 ms | p95 ms | p99 ms | max ms | errors |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| `{path}` | {r['count']:,} | {r['p50']} | {r['p95']} | {r['p99']} | {r['max']} | "
            f"{r['errors']} |" for path, r in figures["latency_ms"].items()]
    share = cpu["share_of_core"]
    out += ["", "CPU while the calls were being issued, as a share of one core: "
            + ", ".join(f"{k} {v:.0%}" for k, v in share.items())
            + f"; the whole machine was {cpu['machine_busy']:.0%} busy ({cpu['cpus']} CPUs). "
            "The load generator (this process: scheduler, simulated phones, and the fake "
            "Twilio) shares the CPUs with the servers, and so does anything else running on "
            "the machine.", "", fan_out_paragraph(figures), "",
            "Requests per web process: "
            + ", ".join(f"{v:,}" for v in figures["by_web_process"].values())
            + f". Where the simulator left the calls: {figures['outcomes']}. Incident counters "
            f"(GET /api/incidents/<id>): {figures['incident_counters']}. The job queues were "
            f"idle {figures['jobs_idle_after_s']} s after the last hang-up."]
    if figures["log_warnings"]:
        out += ["", "Warnings in the logs: `"
                + json.dumps(figures["log_warnings"], ensure_ascii=False) + "`"]
    if figures["error_samples"]:
        out += ["", "Error samples: " + "; ".join(f"`{e}`" for e in figures["error_samples"])]
    out.append(END_MARK)
    return "\n".join(out)


def fan_out_paragraph(figures: dict[str, Any]) -> str:
    """What the SMS fan-out did to the escalations around it: the workers take jobs from
    `sms` before `default`, where the SV dial-outs wait."""
    start = figures.get("declared_at_s", 0.0)
    end = start + figures.get("sms_fan_out_seconds", 0.0)
    timeline = figures.get("dial_delays", [])
    spans = (("Before the declaration", lambda t: t < start),
             ("while the fan-out ran", lambda t: start <= t <= end),
             ("after it", lambda t: t > end))
    parts = []
    for name, inside in spans:
        delays = [d for t, d in timeline if inside(t)]
        rung = [d for d in delays if d is not None]
        spread = (f"; escalation to dial-out p50 {pct(rung, .5):.2f} s, max {max(rung):.2f} s"
                  if rung else "")
        parts.append(f"{name}, {len(rung)} of {len(delays)} escalations rang an SV{spread}")
    return (f"The first report went to {figures.get('sms_sent', 0):,} customers "
            f"({figures.get('sms_segments_per_message', 0)} segments each on average) in "
            f"{figures.get('sms_fan_out_seconds', 0)} s from the declaration. The workers run "
            "`default sms`: a voice job (the SV dial-out, the watchdog, an operator hand-over) "
            "before any SMS job, and an SMS batch hands its worker back as soon as a voice job "
            "waits. " + "; ".join(parts) + ". An escalation whose "
            "caller hangs up before its dial-out job runs rings nobody (the job finds the "
            "call completed), so a dial-out later than the caller's patience is a missed one.")


def write_section(section: str) -> None:
    """Put the storm section into RESULTS.md: in place of an earlier one, else at the end."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    old = kept_section(text)
    if old is not None:
        text = text.replace(old, section)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def kept_section(text: str, marks: tuple[str, str] = (START_MARK, END_MARK)) -> str | None:
    """The storm section of a RESULTS.md text (or the one between `marks`), markers
    included, if it has one."""
    start, end = text.find(marks[0]), text.find(marks[1])
    return text[start:end + len(marks[1])] if start >= 0 and end > start else None
