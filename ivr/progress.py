"""Progress reporting by SMS: who gets a message, what it says, and when the next is due.

Plain values in and out so the web (declare, update, resolve) and the worker (fan-out,
the cadence clock) share one definition of each message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq import Retry
from rq.exceptions import DuplicateJobError

from ivr import cadence, incident, keys
from ivr.errors import invalid
from ivr.lang import LANGS
from ivr.optout import opt_in
from ivr.phone import mask
from ivr.segments import over_by, segments
from ivr.services import Services

log = logging.getLogger(__name__)

# The SMS template per timeline entry kind.
TEMPLATES = {"declared": "sms_first_report", "update": "sms_update", "auto": "sms_update",
             "resolved": "sms_resolved"}
SAMPLE_OPTOUT = "/u/" + "x" * 26  # the longest opt-out link path a message can carry
# How every SMS job that is not a batch (fan-out, update clock, sweep, resend, subscription
# confirmation) is queued. Each re-reads its state and sends nothing twice (claims, fixed job
# ids), so running one again is safe; without a Retry, RQ moves a job that raised or whose
# worker died to the failed registry, and a lost fan-out or update clock is never noticed.
JOB_RETRY = Retry(max=3, interval=[5, 30, 120])


def sms_text(svc: Services, doc: dict[str, Any], entry: dict[str, Any], lang: str,
             optout_url: str) -> str:
    """The message for one timeline entry in one language: confirmed facts, 現在確認中です for
    what is not, when the next update comes (with its date when that is another day than the
    one the entry goes out on), and the opt-out link. The same entry gives the same text
    whenever it is rendered (a sweep, a resend, a settle that compares bodies with Twilio's):
    "today" is the entry's own day, not the clock's."""
    kind = entry["kind"]
    goes_out = svc.local(entry.get("held_until") or entry.get("at")) or svc.now().astimezone(svc.tz)
    return svc.prompts.render(
        TEMPLATES[kind], lang, keep_lines=True,
        sender=svc.flows.sms["sender_name"], title=doc["title"],
        text=incident.in_language(entry.get("message"), lang) or "", auto=kind == "auto",
        status_code=entry.get("status") or doc["status"],
        eta=svc.local(entry.get("eta", doc.get("eta"))),
        next_update=svc.local(entry.get("next_update_at", doc.get("next_update_at"))),
        today=goes_out.date(), optout_url=optout_url)


@dataclass(frozen=True)
class Preview:
    text: str
    segments: int
    encoding: str


def preview(svc: Services, doc: dict[str, Any], entry: dict[str, Any]) -> dict[str, Preview]:
    """Each language's message with the longest opt-out link, and what it costs in segments."""
    url = str(svc.config["PUBLIC_BASE_URL"]).rstrip("/") + SAMPLE_OPTOUT
    out = {}
    for lang in LANGS:
        text = sms_text(svc, doc, entry, lang, url)
        counted = segments(text)
        out[lang] = Preview(text, counted.count, counted.encoding)
    return out


def checked_preview(svc: Services, doc: dict[str, Any], entry: dict[str, Any], field: str,
                    *, enforce: bool = True) -> dict[str, dict[str, Any]]:
    """The preview the API answers with; when the incident sends SMS (`enforce`), a 400
    naming `field.<lang>` if a language the supervisor wrote would need more segments than
    flows/sms.yaml allows, saying by how much."""
    limit = int(svc.flows.sms["max_segments"])
    shown = preview(svc, doc, entry)
    for lang in (entry.get("message") or {}) if enforce else ():
        item = shown[lang]
        if item.segments > limit:
            excess = over_by(item.text, limit)
            raise invalid(f"{field}.{lang}", f"the {lang} SMS would be {item.segments} segments, "
                                             f"{item.segments - limit} over the limit of {limit}:"
                                             f" shorten it by {excess} characters")
    return {lang: {"text": p.text, "segments": p.segments, "encoding": p.encoding}
            for lang, p in shown.items()}


def audience_keys(doc: dict[str, Any]) -> list[str]:
    """The sets whose union is everyone this incident's SMS goes to (before filtering)."""
    scope = doc.get("scope") or {}
    return ([keys.customers_by_service(s) for s in scope.get("services", ())]
            + [keys.customers_by_region(r) for r in scope.get("regions", ())]
            + [keys.incident_subscribers(doc["id"])])


def schedule(svc: Services, doc: dict[str, Any]) -> None:
    """Arm the cadence clock for the incident's next_update_at: the due job, and the SV's
    reminder shortly before. Each job checks on arrival that it is still the due one."""
    due_iso = doc.get("next_update_at")
    if not due_iso or doc.get("status") == "resolved":
        return
    due = incident.from_iso(due_iso)
    remind = due - timedelta(minutes=int(svc.flows.sms["reminder_minutes"]))
    stamp = int(due.timestamp())
    jobs = [(due, "worker.sms.progress_due", f"due-{doc['id']}-{stamp}"),
            (max(remind, svc.now()), "worker.sms.remind_supervisor",
             f"remind-{doc['id']}-{stamp}")]
    for when, func, job_id in jobs:
        try:
            svc.sms_queue.enqueue_at(when, func, doc["id"], due_iso, job_id=job_id, unique=True,
                                     retry=JOB_RETRY)
        except DuplicateJobError:
            log.info("already scheduled job_id=%s", job_id)


def fan_out_job_id(incident_id: str, seq: int) -> str:
    """The one fan-out job of an update: queue_fan_out queues it once, release_held moves it."""
    return f"fanout-{incident_id}-{seq}"


def release_held(svc: Services, doc: dict[str, Any]) -> bool:
    """Send now the latest update held for quiet hours, when the incident's severity (made
    critical) is no longer held: its fan-out job moves from the scheduled registry to the
    queue in one transaction, so it is neither lost nor run twice. True when one moved."""
    now = svc.now()
    if doc.get("status") == "resolved" or cadence.held(svc.flows, doc["severity"], now,
                                                       svc.tz) > now:
        return False
    queue = svc.sms_queue
    job = queue.fetch_job(fan_out_job_id(doc["id"], doc["update_seq"]))
    registry = queue.scheduled_job_registry
    if job is None or job.id not in registry.get_job_ids():
        return False
    pipe = queue.connection.pipeline()
    pipe.multi()  # enqueue_job expects a transaction already begun
    registry.remove(job, pipeline=pipe)
    queue.enqueue_job(job, pipeline=pipe)
    pipe.execute()
    log.info("held sms released incident=%s seq=%s severity=%s", doc["id"], doc["update_seq"],
             doc["severity"])
    return True


def queue_fan_out(svc: Services, doc: dict[str, Any], seq: int, *, urgent: bool) -> None:
    """Queue the messages of timeline entry `seq`: now, or at the end of quiet hours for a
    routine update of a non-critical incident; nothing for an incident declared with
    `notify: false` (worker.sms.fan_out checks again when it runs)."""
    if not doc.get("notify", True):
        return
    now = svc.now()
    when = now if urgent else cadence.held(svc.flows, doc["severity"], now, svc.tz)
    job_id = fan_out_job_id(doc["id"], seq)
    try:
        if when <= now:
            svc.sms_queue.enqueue("worker.sms.fan_out", doc["id"], seq, job_id=job_id,
                                  unique=True, retry=JOB_RETRY)
        else:
            svc.sms_queue.enqueue_at(when, "worker.sms.fan_out", doc["id"], seq, job_id=job_id,
                                     unique=True, retry=JOB_RETRY)
            log.info("sms held for quiet hours incident=%s seq=%s until=%s", doc["id"], seq,
                     when.isoformat())
    except DuplicateJobError:
        log.info("fan-out already queued job_id=%s", job_id)


def subscribe_caller(svc: Services, call_sid: str, incident_id: str, phone: str) -> bool:
    """A waiting caller's key: take `phone` off the suppression list and subscribe it to the
    incident's updates; a new subscriber is confirmed by one SMS (one job per call, so a
    retried webhook queues nothing more). True when the number was not subscribed."""
    opt_in(svc, phone, "voice-queue-key")
    if not svc.redis.sadd(keys.incident_subscribers(incident_id), phone):
        return False
    try:
        svc.sms_queue.enqueue("worker.sms.confirm_subscription", incident_id, phone,
                              job_id=f"subscribed-{incident_id}-{call_sid}", unique=True,
                              retry=JOB_RETRY)
    except DuplicateJobError:
        pass
    log.info("subscribed by key call_sid=%s from=%s", call_sid, mask(phone))
    return True


# What declaring, editing, updating and resolving an incident do beyond the incident's own
# document: check the SMS fits, queue its fan-out, re-arm the update clock. The API and the
# console call these, so neither surface has steps of its own.

def declare(svc: Services, fields: dict[str, Any], *, by: str
            ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Declare an incident (fields from incident.parse_new) and queue its first report:
    (the document, the SMS preview). A first report over the segment limit is a 400 and
    nothing is written."""
    draft = {**fields, "id": "draft", "next_update_at": incident.first_due(svc, fields)}
    sms = checked_preview(svc, draft, {"kind": "declared", "message": fields["announcement"]},
                          "announcement", enforce=fields["notify"])
    doc = incident.declare(svc, fields, by=by)
    queue_fan_out(svc, doc, 0, urgent=True)
    schedule(svc, doc)
    return doc, sms


def edit(svc: Services, incident_id: str, changes: dict[str, Any], *, by: str
         ) -> dict[str, Any]:
    """Apply an edit (from incident.parse_patch); a new severity moves the update clock to
    its cadence and may release an update held for quiet hours."""
    if changes.get("eta") is not None:
        incident.check_eta(svc, changes["eta"], incident.load(svc, incident_id)["created_at"])
    doc = incident.patch(svc, incident_id, changes, by=by)
    if "severity" in changes:
        release_held(svc, doc)
        schedule(svc, doc)
    return doc


def post_update(svc: Services, incident_id: str, update: dict[str, Any], *, by: str
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """Post a progress update (from incident.parse_update), queue its SMS and restart the
    clock: (the document, the timeline entry, the SMS preview)."""
    current = incident.load(svc, incident_id)
    incident.check_eta(svc, update.get("eta"), current["created_at"])
    sms = checked_preview(svc, {**current, **update}, {"kind": "update", **update}, "message",
                          enforce=current.get("notify", True))
    doc, entry = incident.post_update(svc, incident_id, update, by=by)
    queue_fan_out(svc, doc, entry["seq"], urgent=doc["severity"] == "critical")
    schedule(svc, doc)
    return doc, entry, sms


def resolve(svc: Services, incident_id: str, update: dict[str, Any], *, by: str
            ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Resolve (update from incident.parse_update(closing=True)) and queue the closing SMS."""
    current = incident.load(svc, incident_id)
    sms = checked_preview(svc, current, {"kind": "resolved", **update}, "message",
                          enforce=current.get("notify", True))
    doc = incident.resolve(svc, incident_id, update["message"], by=by)
    queue_fan_out(svc, doc, doc["update_seq"], urgent=True)
    return doc, sms
