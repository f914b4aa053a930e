"""SMS jobs: fan-out of one incident update, the sends themselves (exactly once, within the
global rate), the sweep that catches anyone missed, and the cadence clock."""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from datetime import datetime, timedelta
from typing import Any, cast

from requests.exceptions import RequestException
from rq import Retry, get_current_job
from rq.exceptions import DuplicateJobError
from twilio.base.exceptions import TwilioRestException

from ivr import cadence, customer, incident, keys, progress, supervisor, undeliverable
from ivr.delivery import (
    RANK,
    REFUSED_FOR_GOOD_CODES,
    REFUSED_NUMBER_CODES,
    SENDER_REFUSAL_CODES,
    StatusCallback,
    fanout_keys,
    halt,
    halted,
    record_status,
)
from ivr.optout import opt_out, optout_url
from ivr.phone import is_mobile, mask
from ivr.ratelimit import SegmentRate
from ivr.segments import segments
from ivr.services import Services, field_args
from ivr.urls import public_url
from worker import retryable, worker_services

log = logging.getLogger(__name__)

BATCH_RETRY = Retry(max=5, interval=[5, 15, 60, 120, 300])
SCAN_COUNT = 1000
ENQUEUE_CHUNK = 500
AUTO_MESSAGE = {"ja": "引き続き対応中です。", "en": "We are still working on it."}

def _entry(doc: dict[str, Any], seq: int) -> dict[str, Any] | None:
    return next((e for e in doc["timeline"]
                 if e.get("seq") == seq and e["kind"] in progress.TEMPLATES), None)


def _superseded(doc: dict[str, Any], entry: dict[str, Any]) -> bool:
    """An entry other than the closing message of an incident that is resolved: it would
    reach the customer after the closing message, telling them the outage goes on."""
    return entry["kind"] != "resolved" and doc["status"] == "resolved"


def _sender(svc: Services) -> dict[str, str]:
    service = svc.config.get("TWILIO_MESSAGING_SERVICE_SID")
    return {"messaging_service_sid": service} if service else {
        "from_": svc.config["TWILIO_FROM_NUMBER"]}


def _rate(svc: Services) -> SegmentRate:
    return SegmentRate(svc.redis, keys.sms_rate(), float(svc.config["IVR_SMS_MPS"]))


def fan_out(incident_id: str, seq: int) -> int:
    """Freeze the recipients of update `seq` and queue them in batches; return how many."""
    svc = worker_services()
    doc = incident.load(svc, incident_id)
    entry = _entry(doc, seq)
    if entry is None or not doc.get("notify", True):
        return 0
    if _superseded(doc, entry):
        log.info("update superseded by resolution incident=%s seq=%s", incident_id, seq)
        return 0
    audience = keys.sms_audience(incident_id, seq)
    if not svc.redis.exists(audience):
        pipe = svc.redis.pipeline(transaction=True)
        sources = progress.audience_keys(doc)
        pipe.sunionstore(audience, sources)
        numbers = incident.scope_numbers(doc)
        if numbers:
            pipe.sadd(audience, *numbers)
        pipe.expire(audience, keys.SMS_AUDIENCE_TTL)
        pipe.execute()
    total = _queue_batches(svc, incident_id, seq, _scan(svc, audience), tag="b")
    pipe = svc.redis.pipeline(transaction=True)  # the same number again on a re-run
    pipe.hset(keys.sms_fanout(incident_id, seq), "queued", total)
    pipe.expire(keys.sms_fanout(incident_id, seq), keys.SMS_TTL)
    pipe.execute()
    _schedule_sweep(svc, incident_id, seq, 1)
    log.info("fan-out queued incident=%s seq=%s recipients=%d", incident_id, seq, total)
    return total


def _scan(svc: Services, key: str) -> list[str]:
    return sorted(svc.redis.sscan_iter(key, count=SCAN_COUNT))


def _queue_batches(svc: Services, incident_id: str, seq: int, phones: list[str], tag: str
                   ) -> int:
    """Queue `phones` in batch jobs with ids fixed by their position, so re-running the
    fan-out (worker death) names the same jobs, and a repeated batch sends nothing twice."""
    size = int(svc.flows.sms["batch_size"])
    datas = [
        svc.sms_queue.prepare_data(
            "worker.sms.send_batch", (incident_id, seq, phones[i:i + size]),
            job_id=f"sms-{incident_id}-{seq}-{tag}{i // size}", **_batch_options(svc, size))
        for i in range(0, len(phones), size)
    ]
    for i in range(0, len(datas), ENQUEUE_CHUNK):
        with svc.rq_redis.pipeline() as pipe:
            svc.sms_queue.enqueue_many(datas[i:i + ENQUEUE_CHUNK], pipeline=pipe)
            pipe.execute()
    return len(phones)


def _batch_options(svc: Services, recipients: int) -> dict[str, Any]:
    """How a send_batch job of this many recipients is queued: a timeout that leaves room for
    three segments each at IVR_SMS_MPS, and the retries that survive a worker's death."""
    mps = float(svc.config["IVR_SMS_MPS"])
    return {"timeout": int(60 + recipients * 3 / mps), "retry": BATCH_RETRY,
            "result_ttl": 3600}


def _schedule_sweep(svc: Services, incident_id: str, seq: int, round_: int) -> None:
    try:
        svc.sms_queue.enqueue_in(
            timedelta(minutes=int(svc.flows.sms["sweep_after_minutes"])),
            "worker.sms.sweep", incident_id, seq, round_,
            job_id=f"sweep-{incident_id}-{seq}-{round_}", unique=True, retry=progress.JOB_RETRY)
    except DuplicateJobError:
        pass


def sweep(incident_id: str, seq: int, round_: int = 1) -> int:
    """Queue again every recipient of a fan-out with no message yet: no claim (a batch that
    ran out of retries) or a claim still pending (its worker died or was held up mid-send;
    the send job settles it from Twilio's record). Nobody is skipped silently. Up to three
    rounds."""
    svc = worker_services()
    phones = _scan(svc, keys.sms_audience(incident_id, seq))
    pipe = svc.redis.pipeline(transaction=False)
    for phone in phones:
        pipe.get(keys.sms_claim(incident_id, seq, phone))
    missing = [p for p, claim in zip(phones, pipe.execute(), strict=True)
               if claim is None or claim.startswith("pending:")]
    if missing and not svc.redis.exists(keys.sms_halt(incident_id, seq)):
        log.warning("sweep re-queues incident=%s seq=%s missing=%d", incident_id, seq,
                    len(missing))
        _queue_batches(svc, incident_id, seq, missing, tag=f"s{round_}-")
        if round_ < 3:
            _schedule_sweep(svc, incident_id, seq, round_ + 1)
    return len(missing)


def send_batch(incident_id: str, seq: int, phones: list[str]) -> dict[str, int]:
    """Send update `seq` to each number at most once; safe to run again after a crash."""
    svc = worker_services()
    doc = incident.load(svc, incident_id)
    entry = _entry(doc, seq)
    outcomes: dict[str, int] = {}
    if entry is None:
        return outcomes
    rate = _rate(svc)
    for i, phone in enumerate(phones):
        if i and svc.queue.count:
            _continue_later(svc, incident_id, seq, phones[i:])
            outcomes["handed_back"] = len(phones) - i
            break
        result = deliver(svc, doc, entry, seq, phone, rate)
        outcomes[result] = outcomes.get(result, 0) + 1
        if result == "halted":
            break
    return outcomes


def _continue_later(svc: Services, incident_id: str, seq: int, rest: list[str]) -> None:
    """A voice job is waiting (an SV to ring, a caller to hand to an operator): give the
    worker back and queue the rest of this batch at the head of the SMS queue. Workers take
    `default` before `sms`, so the voice job runs next and the fan-out resumes after it; a
    batch at 10 segments a second could otherwise hold a worker for half a minute while a
    caller hears hold music. Recipients already claimed are skipped if the rest runs twice."""
    job = get_current_job()
    job_id = f"{job.id if job else f'sms-{incident_id}-{seq}'}-r{len(rest)}"
    svc.sms_queue.enqueue_call("worker.sms.send_batch", (incident_id, seq, rest), job_id=job_id,
                               at_front=True, **_batch_options(svc, len(rest)))
    log.info("batch handed back for voice jobs incident=%s seq=%s rest=%d job_id=%s",
             incident_id, seq, len(rest), job_id)


def deliver(svc: Services, doc: dict[str, Any], entry: dict[str, Any], seq: int | str,
            phone: str, rate: SegmentRate) -> str:
    """One message to one number: 'sent', 'skipped' (done before, in flight, not wanted, or
    superseded: an update of an incident resolved since, which a sweep or a resend would
    otherwise deliver after 「復旧いたしました」), 'failed' (permanent for this number) or
    'halted' (the fan-out must stop)."""
    incident_id = doc["id"]
    if _superseded(doc, entry):
        return "skipped"
    if halted(svc, incident_id, seq):
        return "halted"
    pipe = svc.redis.pipeline(transaction=False)
    pipe.sismember(keys.sms_optout(), phone)
    pipe.exists(keys.sms_undeliverable(phone))
    pipe.hgetall(keys.customer(phone))
    opted_out, marked, data = pipe.execute()
    found = customer.Customer.from_hash(data)
    if opted_out or marked or (found and (not found.mobile or not found.sms_opt_in)):
        return "skipped"
    if not found and not is_mobile(phone):
        return "skipped"  # a number in scope with no record: only its plan says it takes SMS
    lang = found.language if found else svc.flows.default_language
    body = progress.sms_text(svc, doc, entry, lang, optout_url(svc.config, phone))
    return _claim_and_send(svc, incident_id, seq, phone, body, rate)


def _claim_and_send(svc: Services, incident_id: str, seq: int | str, phone: str, body: str,
                    rate: SegmentRate) -> str:
    """Send `body` unless this (incident, update, number) is already sent or being sent:
    'skipped', or what _send says."""
    claim = keys.sms_claim(incident_id, seq, phone)
    held = _claim(svc, incident_id, seq, phone, body, claim)
    if held is None:
        return "skipped"
    return _send(svc, incident_id, seq, phone, body, claim, held, rate)


def _pending(svc: Services) -> str:
    """A claim value of this sender's own: when it was taken, and a token no other sender
    taking a claim in the same second has."""
    return f"pending:{int(svc.now().timestamp())}:{secrets.token_hex(4)}"


def _taken_at(pending: str) -> int:
    """The epoch second a 'pending:<epoch>[:<token>]' claim was taken (or last renewed)."""
    return int(pending.split(":")[1])


def _claim(svc: Services, incident_id: str, seq: int | str, phone: str, body: str,
           claim: str) -> str | None:
    """Take the send for this (incident, update, number), whose claim key is `claim`, and
    return the claim value now held (None: not this worker's to send). A stale 'pending'
    left by a dead or held-up worker is settled from Twilio's record: if Twilio has the
    message, it is recorded (claim, message record, sms_sent) as if its sender had lived, its
    status as if Twilio's callback had found the record, and it is not sent again."""
    mine = _pending(svc)
    if svc.redis.set(claim, mine, nx=True, ex=keys.SMS_TTL):
        return mine
    value = cast("str | None", svc.redis.get(claim)) or ""
    if not value.startswith("pending:"):
        return None
    since = _taken_at(value)
    if int(svc.now().timestamp()) - since < int(svc.flows.sms["settle_after_seconds"]):
        return None  # another worker is sending it right now
    sent = _find_sent(svc, phone, body, since)
    if sent is not None:
        sid = str(sent.sid)
        if _record(svc, "settle", claim, value, sid, incident_id, seq, phone, "queued",
                   segments(body).count, settled="twilio"):
            log.info("settled from twilio message_sid=%s to=%s", sid, mask(phone))
            status = str(sent.status or "")
            if status in RANK:  # the callbacks that found no record meanwhile
                code = int(sent.error_code) if sent.error_code else None
                record_status(svc, StatusCallback(sid, status, code, phone))
        return None
    return mine if _swap(svc, claim, value, mine) else None


def _find_sent(svc: Services, phone: str, body: str, since: int) -> Any | None:
    """Twilio's own record: a message with this body to this number since the claim."""
    after = datetime.fromtimestamp(since - 60).astimezone()
    for message in svc.twilio.messages.list(to=phone, limit=50):
        created = message.date_created
        if message.body == body and (created is None or created >= after):
            return message
    return None


def _send(svc: Services, incident_id: str, seq: int | str, phone: str, body: str,
          claim: str, held: str, rate: SegmentRate) -> str:
    """Send under the claim value `held`. Before each request to Twilio a claim taken in an
    earlier second is renewed (only if it is still `held`; one taken this second is as fresh
    as a renewal, and most are, which spares the fan-out a round trip a message): its age
    then counts from the send, and the HTTP timeout (5 s a read) stays far inside
    settle_after_seconds (at least 15), so another worker takes over a claim whose message
    is on its way only if this process stalls longer than that (the message is then
    recorded all the same, with a warning). A sender that lost its claim sends nothing, and
    lets go of the claim afterwards only while it still holds it."""
    count = segments(body).count
    for attempt in range(3):
        rate.acquire(count)
        if _taken_at(held) < int(svc.now().timestamp()):
            renewed = _pending(svc)
            if not _swap(svc, claim, held, renewed):
                log.warning("sms claim taken over while held up, not sent incident=%s to=%s",
                            incident_id, mask(phone))
                return "skipped"
            held = renewed
        try:
            message = svc.twilio.messages.create(
                to=phone, body=body, status_callback=public_url(svc.config, "/sms/status"),
                **_sender(svc))
            break
        except TwilioRestException as e:
            if retryable(e):
                if attempt < 2:
                    time.sleep(min(8.0, 0.5 * 2 ** attempt) + random.uniform(0, 0.5))
                    continue
                _release(svc, claim, held, incident_id)  # Twilio took nothing: a retry sends
                raise
            return _refused(svc, incident_id, seq, phone, claim, held, e)
        except RequestException:
            log.warning("sms outcome unknown, left to settle incident=%s to=%s",
                        incident_id, mask(phone))
            raise
    sid = str(message.sid)
    recorded = _record(svc, "sent", claim, held, sid, incident_id, seq, phone,
                       str(message.status or "queued"), count)
    if recorded == 0:
        log.info("sms already settled from twilio message_sid=%s to=%s", sid, mask(phone))
    elif recorded == 2:
        log.warning("sms sent after its claim was taken over message_sid=%s to=%s", sid,
                    mask(phone))
    return "sent"


def _swap(svc: Services, claim: str, expected: str, new: str) -> bool:
    """ivr/lua/sms_claim_swap.lua: `claim` becomes `new` only if it still holds `expected`."""
    return bool(svc.script("sms_claim_swap")(keys=[claim], args=[expected, new, keys.SMS_TTL]))


def _record(svc: Services, mode: str, claim: str, expected: str, sid: str,
            incident_id: str, seq: int | str, phone: str, status: str, count: int,
            **extra: str) -> int:
    """ivr/lua/sms_record.lua for message `sid` ('sent' by its sender, or 'settle' a stale
    claim from Twilio's record): the claim, its record, the counts."""
    record = {"incident_id": incident_id, "seq": str(seq), "to": phone, "status": status,
              "segments": str(count), "created_at": svc.now().isoformat(), **extra}
    return int(svc.script("sms_record")(
        keys=[claim, keys.sms_message(sid), keys.incident_counters(incident_id),
              keys.metrics_sms(), *fanout_keys(incident_id, seq)],
        args=[mode, expected, sid, keys.SMS_TTL, *field_args(record)]))


def _release(svc: Services, claim: str, held: str, incident_id: str, failed: str = "",
             seq: int | str | None = None) -> bool:
    """ivr/lua/sms_release.lua: delete the claim (or mark it `failed`, counted for the
    incident and for update `seq`) if this sender still holds it."""
    return bool(svc.script("sms_release")(
        keys=[claim, keys.incident_counters(incident_id), keys.metrics_sms(),
              *fanout_keys(incident_id, seq)],
        args=[held, failed, keys.SMS_TTL]))


def _refused(svc: Services, incident_id: str, seq: int | str, phone: str, claim: str,
             held: str, e: TwilioRestException) -> str:
    """Twilio said no: about this number (failed; remembered when it is for good), or about
    the account, sender or message, which must stop the fan-out until ops have looked."""
    code = int(e.code or 0)
    if code in SENDER_REFUSAL_CODES or e.status in (401, 403):
        _release(svc, claim, held, incident_id)  # not sent: a resumed fan-out may send it
        halt(svc, incident_id, seq, code)
        return "halted"
    _release(svc, claim, held, incident_id, failed=f"failed:{code}", seq=seq)
    if code == 21610:
        opt_out(svc, phone, "twilio-21610")
    elif code in REFUSED_FOR_GOOD_CODES:
        undeliverable.mark(svc, phone, code)
    log.log(logging.INFO if code in REFUSED_NUMBER_CODES else logging.WARNING,
            "sms refused for this number code=%s to=%s", code, mask(phone))
    return "failed"


def resend_message(message_sid: str) -> str | None:
    """Send a message once more after a temporary carrier failure (30003, 30008)."""
    svc = worker_services()
    record = cast("dict[str, str]", svc.redis.hgetall(keys.sms_message(message_sid)))
    if not record or record.get("resend_of"):
        return None
    doc = incident.load(svc, record["incident_id"])
    entry = _entry(doc, int(record["seq"])) if record["seq"].isdigit() else None
    if entry is None:
        return None
    label = f"resend-{record['seq']}"
    result = deliver(svc, doc, entry, label, record["to"], _rate(svc))
    sid = cast("str | None", svc.redis.get(keys.sms_claim(doc["id"], label, record["to"])))
    if result == "sent" and sid:
        svc.redis.hset(keys.sms_message(sid), "resend_of", message_sid)
    return sid


def confirm_subscription(incident_id: str, phone: str) -> str:
    """The one SMS that confirms a caller's key-press subscription to an incident."""
    svc = worker_services()
    doc = incident.load(svc, incident_id)
    data = cast("dict[str, str]", svc.redis.hgetall(keys.customer(phone)))
    found = customer.Customer.from_hash(data)
    lang = found.language if found else svc.flows.default_language
    body = svc.prompts.render("sms_subscribed", lang, keep_lines=True,
                              sender=svc.flows.sms["sender_name"], title=doc["title"],
                              optout_url=optout_url(svc.config, phone))
    return _claim_and_send(svc, incident_id, "subscribed", phone, body, _rate(svc))


def progress_due(incident_id: str, due: str) -> str:
    """The update clock ran out: hold it to the morning in quiet hours, else tell everyone
    "引き続き対応中です" with the next time, and re-arm the clock.

    Run again after dying between recording the update (or the hold) and queueing what
    follows, it finds the timeline entry it wrote for this `due` and queues the rest: the
    fan-out and the clock jobs have fixed ids, so nothing is queued twice."""
    svc = worker_services()
    doc = incident.load(svc, incident_id)
    if doc["status"] == "resolved":
        return "superseded"
    if doc.get("next_update_at") != due:
        return _finish_due(svc, doc, due)
    now = svc.now()
    if cadence.held(svc.flows, doc["severity"], now, svc.tz) > now:
        held = incident.hold(svc, incident_id, due, cadence.quiet_end(svc.flows, now, svc.tz))
        if held:
            progress.schedule(svc, held)
        return "held"
    doc, entry = incident.post_update(svc, incident_id, {"message": dict(AUTO_MESSAGE)},
                                      "system", kind="auto", due=due)
    progress.queue_fan_out(svc, doc, entry["seq"], urgent=True)
    progress.schedule(svc, doc)
    return "sent"


def _finish_due(svc: Services, doc: dict[str, Any], due: str) -> str:
    """The clock job for `due` found the clock moved on: by a newer update ('superseded'),
    or by its own earlier run, whose entry for `due` is then finished ('sent', 'held') unless
    a newer update has moved the clock again since."""
    mine = next((e for e in reversed(doc["timeline"])
                 if e["kind"] in ("auto", "held") and e.get("due") == due), None)
    if mine is None or doc.get("next_update_at") != mine.get("next_update_at",
                                                            mine.get("until")):
        return "superseded"
    if mine["kind"] == "auto":
        progress.queue_fan_out(svc, doc, mine["seq"], urgent=True)
    progress.schedule(svc, doc)
    return "sent" if mine["kind"] == "auto" else "held"


def remind_supervisor(incident_id: str, due: str) -> str | None:
    """Ten minutes before an update is due, ask the on-call SV for real news by SMS."""
    svc = worker_services()
    doc = incident.load(svc, incident_id)
    if doc["status"] == "resolved" or doc.get("next_update_at") != due:
        return None
    people = supervisor.candidates(svc, "manager")
    if not people:
        log.warning("no on-call supervisor to remind incident=%s", incident_id)
        return None
    sv = people[0]
    due_at = incident.from_iso(due)
    key = keys.sms_reminder(incident_id, int(due_at.timestamp()))
    record = json.dumps({"to": sv.phone, "name": sv.name, "sent_at": svc.now().isoformat()})
    if not svc.redis.set(key, record, nx=True, ex=keys.SMS_TTL):
        return None
    minutes = max(1, round((due_at - svc.now()).total_seconds() / 60))
    body = svc.prompts.render("sms_reminder", sv.lang, keep_lines=True,
                              sender=svc.flows.sms["sender_name"], title=doc["title"],
                              due=due_at.astimezone(svc.tz), minutes=minutes)
    _rate(svc).acquire(segments(body).count)
    message = svc.twilio.messages.create(to=sv.phone, body=body, **_sender(svc))
    log.info("supervisor reminded incident=%s to=%s", incident_id, mask(sv.phone))
    return str(message.sid)
