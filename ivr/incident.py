"""Incidents: what supervisors declare, what every caller hears, what the timeline records."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, cast, overload

import redis

from ivr import keys, validate
from ivr.cadence import held, next_due, rescheduled
from ivr.customer import LABEL_FORBIDDEN, MAX_LABEL, Customer
from ivr.errors import ApiError, invalid
from ivr.lang import LANGS
from ivr.phone import normalize
from ivr.services import Services

SEVERITIES = ("critical", "major", "minor")
OPEN_STATUSES = ("investigating", "identified", "monitoring")
AUDIENCES = ("all", "affected")
ANNOUNCEMENT_MAX = 1000
COUNTERS = ("calls", "affected_calls", "escalations", "sms_sent", "sms_delivered",
            "sms_failed")
ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O or U
ID_PATTERN = re.compile(r"^INC-[0-9]{8}-[0-9]{4,}(?:-[0-9A-HJKMNP-TV-Z]{4})?$")
"""Today's ids (INC-<date>-<HHMM>-<4 random>) and the counter ids of earlier versions
(INC-<date>-<NNNN>), which stored incidents may still carry."""


def _not_found(incident_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no incident {incident_id[:64]}")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def from_iso(iso: str) -> datetime:
    """A time the incident stores (UTC ISO, `Z` or `+00:00`) as an aware datetime."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@overload
def _per_language(value: Any, field: str, *, url: bool = ..., keep_null: Literal[False] = ...
                  ) -> dict[str, str]: ...
@overload
def _per_language(value: Any, field: str, *, url: bool = ..., keep_null: Literal[True]
                  ) -> dict[str, str | None]: ...
def _per_language(value: Any, field: str, *, url: bool = False, keep_null: bool = False
                  ) -> dict[str, str] | dict[str, str | None]:
    """{"ja": …, "en": …}: the announcement texts or recording URLs. With `keep_null` (PATCH),
    a null stays in the result and means "remove this language"."""
    if not isinstance(value, dict):
        raise invalid(field, f"{field} must be an object keyed by language (ja, en)")
    out: dict[str, str | None] = {}
    for lang, item in value.items():
        if lang not in LANGS:
            raise invalid(f"{field}.{lang}", f"unknown language {lang}; use ja or en")
        if item is None:
            if keep_null:
                out[lang] = None
            continue
        limit = 500 if url else ANNOUNCEMENT_MAX
        checked = validate.text(value, lang, max_len=limit, field=f"{field}.{lang}")
        if url and not str(checked).startswith("https://"):
            raise invalid(f"{field}.{lang}", f"{field}.{lang} must be an https URL")
        out[lang] = str(checked)
    return out


def _scope(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {"services": [], "regions": [], "numbers": []}
    if not isinstance(value, dict):
        raise invalid("scope", "scope must be an object with services, regions, numbers")
    validate.only_fields(value, ("services", "regions", "numbers"), prefix="scope.")
    numbers = []
    for i, raw in enumerate(validate.string_list(value.get("numbers"), "scope.numbers",
                                                 max_items=10_000, max_len=32)):
        e164 = normalize(raw)
        if e164 is None:
            raise invalid(f"scope.numbers[{i}]", f"scope.numbers[{i}] is not a phone number")
        numbers.append(e164)
    return {
        "services": validate.string_list(value.get("services"), "scope.services",
                                         max_len=MAX_LABEL, forbidden=LABEL_FORBIDDEN),
        "regions": validate.string_list(value.get("regions"), "scope.regions",
                                        max_len=MAX_LABEL, forbidden=LABEL_FORBIDDEN),
        "numbers": sorted(set(numbers)),
    }


def _message(value: Any, field: str = "message") -> dict[str, str]:
    """An update message: one string (the same for every language) or an object per language."""
    if isinstance(value, str):
        text = validate.text({field: value}, field, max_len=ANNOUNCEMENT_MAX)
        return {"ja": str(text)}
    if value is None:
        raise invalid(field, f"{field} is required")
    texts = _per_language(value, field)
    if not texts:  # {} or only nulls: an SMS with no news in it
        raise invalid(field, f"{field} needs the text in at least one language, e.g. "
                             '{"ja": "…"}')
    return texts


NEW_FIELDS = ("title", "severity", "status", "scope", "audience", "announcement", "recordings",
              "eta", "notify")
PATCH_FIELDS = ("title", "severity", "status", "scope", "audience", "announcement",
                "recordings", "eta")


def parse_new(body: Mapping[str, Any], svc: Services) -> dict[str, Any]:
    """Check a declaration completely before anything is written."""
    validate.only_fields(body, NEW_FIELDS)
    scope = _scope(body.get("scope"))
    has_scope = any(scope.values())
    announcement = _per_language(body.get("announcement"), "announcement") \
        if body.get("announcement") is not None else {}
    if not announcement:
        raise invalid("announcement", "announcement needs the text callers hear, e.g. "
                                      '{"ja": "…"}')
    return {
        "title": validate.text(body, "title"),
        "severity": validate.choice(body, "severity", SEVERITIES),
        "status": validate.choice(body, "status", OPEN_STATUSES, default="investigating"),
        "scope": scope,
        "audience": validate.choice(body, "audience", AUDIENCES,
                                    default="affected" if has_scope else "all"),
        "announcement": announcement,
        "recordings": _per_language(body["recordings"], "recordings", url=True)
        if body.get("recordings") is not None else {},
        "eta": check_eta(svc, _iso(validate.timestamp(body.get("eta"), "eta", svc.tz))),
        "notify": validate.boolean(body, "notify", True),
    }


ETA_HORIZON = timedelta(days=365)
"""How far ahead an ETA may be: beyond it is a typo (9999-12-31), not an estimate."""


def check_eta(svc: Services, eta: str | None, since: str | None = None) -> str | None:
    """`eta` when it falls between `since` (the declaration; now for a new incident) and
    ETA_HORIZON from now; else a 400 naming eta. Callers hear the ETA read out, so it must
    be a time a person can say and a clock can hold."""
    if eta is None:
        return None
    moment, now = from_iso(eta), svc.now()
    start = from_iso(since) if since else now
    if not start - timedelta(minutes=1) <= moment <= now + ETA_HORIZON:
        raise invalid("eta", "eta must fall between the declaration and one year from now")
    return eta


def parse_patch(body: Mapping[str, Any], svc: Services) -> dict[str, Any]:
    validate.only_fields(body, PATCH_FIELDS)
    if not body:
        raise ApiError(400, "empty_patch", "give at least one of " + ", ".join(PATCH_FIELDS))
    if body.get("status") == "resolved":
        raise invalid("status", "resolve with POST /api/incidents/<id>/resolve, which also "
                                "sends the closing message")
    changes: dict[str, Any] = {}
    if "title" in body:
        changes["title"] = validate.text(body, "title")
    if "severity" in body:
        changes["severity"] = validate.choice(body, "severity", SEVERITIES)
    if "status" in body:
        changes["status"] = validate.choice(body, "status", OPEN_STATUSES)
    if "scope" in body:
        changes["scope"] = _scope(body["scope"])
    if "audience" in body:
        changes["audience"] = validate.choice(body, "audience", AUDIENCES)
    if "announcement" in body:
        changes["announcement"] = _per_language(body["announcement"], "announcement",
                                                keep_null=True)
        if not changes["announcement"]:
            raise invalid("announcement", "announcement needs the text callers hear, e.g. "
                                          '{"ja": "…"}')
    if "recordings" in body:
        changes["recordings"] = _per_language(body["recordings"] or {}, "recordings", url=True,
                                              keep_null=True)
    if "eta" in body:
        changes["eta"] = _iso(validate.timestamp(body["eta"], "eta", svc.tz))
    return changes


def parse_update(body: Mapping[str, Any], svc: Services, *, closing: bool = False
                 ) -> dict[str, Any]:
    validate.only_fields(body, ("message",) if closing else ("message", "eta", "status"))
    update: dict[str, Any] = {"message": _message(body.get("message"))}
    if not closing:
        if "eta" in body:
            update["eta"] = _iso(validate.timestamp(body["eta"], "eta", svc.tz))
        if body.get("status") is not None:
            update["status"] = validate.choice(body, "status", OPEN_STATUSES)
    return update


def first_due(svc: Services, fields: Mapping[str, Any]) -> str | None:
    """When the first progress update after the declaration falls due."""
    return _iso(next_due(svc.flows, fields["severity"], svc.now(), svc.tz))


def new_id(svc: Services) -> str:
    """INC-<date>-<HHMM>-<4 random>, the date and minute of the declaration in IVR_TIMEZONE.

    Never the id of an earlier incident, even one lost with Redis's data: a counter kept in
    Redis falls back with it, while the job queue, SMS claims, logs and reports still carry
    the lost incident's id. Two ids meet only if declared in the same minute and drawn the
    same 20 random bits (about one in a million); `declare` redraws one already stored.
    Only [A-Z0-9-], so an id fits URLs and RQ job ids as it is (docs/decisions.md)."""
    suffix = "".join(secrets.choice(ID_ALPHABET) for _ in range(4))
    return f"INC-{svc.now().astimezone(svc.tz):%Y%m%d-%H%M}-{suffix}"


def declare(svc: Services, fields: dict[str, Any], by: str) -> dict[str, Any]:
    """Store a new incident and make it the announcement every matching caller hears; `by`
    is the login of whoever declared it ("bootstrap" for IVR_ADMIN_TOKEN)."""
    now = svc.now()
    incident_id = new_id(svc)
    while svc.redis.exists(keys.incident(incident_id)):  # a draw already taken: once in ~10^6
        incident_id = new_id(svc)
    doc = {
        "id": incident_id, **fields,
        "declared_by": by,
        "created_at": _iso(now), "updated_at": _iso(now), "resolved_at": None,
        "update_seq": 0,
        "next_update_at": first_due(svc, fields),
    }
    entry = {"seq": 0, "kind": "declared", "at": _iso(now), "by": by,
             "status": doc["status"], "message": doc["announcement"], "eta": doc["eta"]}
    pipe = svc.redis.pipeline(transaction=True)
    pipe.set(keys.incident(incident_id), json.dumps(doc, ensure_ascii=False))
    store_active(pipe, doc, numbers_changed=True)
    pipe.zadd(keys.incidents_all(), {incident_id: now.timestamp()})
    pipe.rpush(keys.incident_timeline(incident_id), json.dumps(entry, ensure_ascii=False))
    pipe.hset(keys.incident_counters(incident_id), mapping={c: 0 for c in COUNTERS})
    pipe.execute()
    return doc


def scope_numbers(doc: Mapping[str, Any]) -> list[str]:
    """The phone numbers in an incident document's scope (the full document: the active
    copy leaves them out)."""
    return list((doc.get("scope") or {}).get("numbers") or [])


def _split(active_copy: str | None) -> bool:
    """Whether an active copy keeps its numbers apart (written by store_active), rather than
    inline as copies written before the number sets did."""
    return active_copy is not None and "number_count" in (json.loads(active_copy).get("scope")
                                                          or {})


def upgrade_active(svc: Services) -> int:
    """Rewrite every active copy that still carries its numbers inline (written before the
    number sets) through store_active, from the full document; return how many. Callers are
    matched by number only through the sets, so this runs when the app starts."""
    upgraded = 0
    active = cast("dict[str, str]", svc.redis.hgetall(keys.incidents_active()))
    for incident_id, raw in active.items():
        if _split(raw):
            continue
        key = keys.incident(incident_id)

        def attempt(pipe: redis.client.Pipeline, key: str = key) -> None:
            stored = pipe.get(key)
            if stored is None:
                return
            pipe.multi()
            store_active(pipe, json.loads(stored), numbers_changed=True)

        svc.redis.transaction(attempt, key)
        upgraded += 1
    return upgraded


def store_active(pipe: redis.client.Pipeline, doc: dict[str, Any], *,
                 numbers_changed: bool) -> None:
    """Write the copy every caller's script reads: the document with scope.numbers left out
    (`number_count` instead) and the numbers in a set of their own. A scope of up to 10,000
    numbers made each call decode and scan the whole list, ~3.7 ms of Redis a call at 10,000;
    a SISMEMBER costs the same however many there are."""
    numbers = scope_numbers(doc)
    scope = {k: v for k, v in doc["scope"].items() if k != "numbers"}
    active = {**doc, "scope": {**scope, "number_count": len(numbers)}}
    pipe.hset(keys.incidents_active(), doc["id"], json.dumps(active, ensure_ascii=False))
    if numbers_changed:
        pipe.delete(keys.incident_numbers(doc["id"]))
        if numbers:
            pipe.sadd(keys.incident_numbers(doc["id"]), *numbers)


def _change(svc: Services, incident_id: str, mutate: Any,
            entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read-modify-write one incident under WATCH, so two supervisors never overwrite each
    other; the active copy, the document and the timeline change together or not at all."""
    if not ID_PATTERN.match(incident_id):
        raise _not_found(incident_id)
    key = keys.incident(incident_id)

    def attempt(pipe: redis.client.Pipeline) -> dict[str, Any]:
        raw = pipe.get(key)
        if raw is None:
            raise _not_found(incident_id)
        doc = json.loads(raw)
        if doc["status"] == "resolved":
            raise ApiError(409, "resolved", f"incident {incident_id} is already resolved")
        numbers = scope_numbers(doc)
        had_set = _split(cast("str | None", pipe.hget(keys.incidents_active(), incident_id)))
        doc = mutate(doc)
        doc["updated_at"] = _iso(svc.now())
        pipe.multi()
        pipe.set(key, json.dumps(doc, ensure_ascii=False))
        if doc["status"] == "resolved":
            pipe.hdel(keys.incidents_active(), incident_id)
            pipe.delete(keys.incident_numbers(incident_id))
        else:
            store_active(pipe, doc,
                         numbers_changed=not had_set or scope_numbers(doc) != numbers)
        if entry is not None:
            pipe.rpush(keys.incident_timeline(incident_id),
                       json.dumps({**entry, "seq": doc["update_seq"]}, ensure_ascii=False))
        return doc

    # redis-py hints `func` as returning None and the result as EXEC's replies; with
    # value_from_callable the result is what `attempt` returned.
    result = svc.redis.transaction(attempt, key, value_from_callable=True)  # type: ignore[arg-type]
    return cast("dict[str, Any]", result)


SENT_KINDS = ("declared", "update", "auto")  # timeline entries that restart the update clock


def _last_update_at(svc: Services, doc: Mapping[str, Any], severity: str) -> datetime:
    """When the incident's latest update (or its declaration) went out, or goes out if held
    for quiet hours, under `severity`: an update held at night goes out now once the
    incident is made critical (progress.release_held sends it). Read while the document is
    WATCHed: an update landing meanwhile changes the document too, so the transaction runs
    again and reads its entry."""
    now = svc.now()
    timeline = cast("list[str]", svc.redis.lrange(keys.incident_timeline(doc["id"]), 0, -1))
    for raw in reversed(timeline):
        entry = json.loads(raw)
        if entry["kind"] in SENT_KINDS and entry.get("seq") == doc["update_seq"]:
            until = entry.get("held_until")
            if until and from_iso(until) > now and held(svc.flows, severity, now, svc.tz) <= now:
                return now
            return from_iso(until or entry["at"])
    return from_iso(doc["created_at"])



def apply_changes(doc: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` (parse_patch's) written into `doc` in place, as an edit stores them:
    announcement and recordings merge per language and a null removes that language; any
    other field is replaced. The console's preview applies a draft edit the same way."""
    for name, value in changes.items():
        if name in ("announcement", "recordings"):
            merged = {**doc.get(name, {}), **value}
            doc[name] = {lang: text for lang, text in merged.items() if text is not None}
        else:
            doc[name] = value
    return doc

def patch(svc: Services, incident_id: str, changes: dict[str, Any], by: str) -> dict[str, Any]:
    """Apply an edit; announcement and recordings merge per language (null removes one), so
    correcting the Japanese text never drops the English one. A new severity moves the next
    update to its cadence, counted from the latest update (the caller re-arms the clock)."""

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        if changes.get("severity", doc["severity"]) != doc["severity"]:
            doc["next_update_at"] = _iso(rescheduled(
                svc.flows, changes["severity"], _last_update_at(svc, doc, changes["severity"]),
                svc.now(), svc.tz))
        apply_changes(doc, changes)
        if not doc["announcement"]:
            raise invalid("announcement", "an incident must keep the text callers hear in at "
                                          "least one language")
        return doc

    entry = {"kind": "edited", "at": _iso(svc.now()), "by": by, "fields": sorted(changes)}
    return _change(svc, incident_id, mutate, entry)


def post_update(svc: Services, incident_id: str, update: dict[str, Any], by: str,
                kind: str = "update", *, due: str | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record a progress update (a supervisor's, or kind 'auto' when the clock ran out with no
    news) and restart the update clock from when it goes out: now, or for a routine update
    held for quiet hours (`held_until` on its entry) the end of them, so the automatic update
    does not go out beside it that morning. An 'auto' entry keeps the `due` it answers, so
    the clock job, run again after dying half-way, finds its own entry and finishes it."""
    now = svc.now()
    entry: dict[str, Any] = {"kind": kind, "at": _iso(now), "by": by, **update}
    if due is not None:
        entry["due"] = due

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        doc["update_seq"] += 1
        doc.update({k: v for k, v in update.items() if k in ("eta", "status")})
        doc["latest_update"] = update["message"]
        goes_out = held(svc.flows, doc["severity"], now, svc.tz)
        if goes_out > now:
            entry["held_until"] = _iso(goes_out)
        else:
            entry.pop("held_until", None)
        doc["next_update_at"] = _iso(next_due(svc.flows, doc["severity"], goes_out, svc.tz))
        entry.update(status=doc["status"], eta=doc["eta"], next_update_at=doc["next_update_at"])
        return doc

    doc = _change(svc, incident_id, mutate, entry)
    return doc, {**entry, "seq": doc["update_seq"]}


def hold(svc: Services, incident_id: str, due: str, until: datetime) -> dict[str, Any] | None:
    """Move a routine update due at `due` to `until` (quiet hours), if it is still the one
    due; None when a newer update or the resolution has superseded it."""

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        if doc["next_update_at"] != due:
            raise _Superseded
        doc["next_update_at"] = _iso(until)
        return doc

    entry = {"kind": "held", "at": _iso(svc.now()), "by": "system", "until": _iso(until),
             "due": due}
    try:
        return _change(svc, incident_id, mutate, entry)
    except (_Superseded, ApiError):
        return None


class _Superseded(Exception):
    """The scheduled moment no longer matches the incident (a newer update came first)."""


def resolve(svc: Services, incident_id: str, message: dict[str, str], by: str
            ) -> dict[str, Any]:
    """Close the incident: callers stop hearing it and the update clock stops."""
    now = svc.now()
    entry = {"kind": "resolved", "at": _iso(now), "by": by, "message": message,
             "status": "resolved"}

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        doc["update_seq"] += 1
        doc.update(status="resolved", resolved_at=_iso(now), next_update_at=None,
                   latest_update=message)
        return doc

    return _change(svc, incident_id, mutate, entry)


def load(svc: Services, incident_id: str) -> dict[str, Any]:
    """One incident with its timeline and counters, for the API and console."""
    if not ID_PATTERN.match(incident_id):
        raise _not_found(incident_id)
    pipe = svc.redis.pipeline(transaction=False)
    pipe.get(keys.incident(incident_id))
    pipe.lrange(keys.incident_timeline(incident_id), 0, -1)
    pipe.hgetall(keys.incident_counters(incident_id))
    raw, timeline, counters = pipe.execute()
    if raw is None:
        raise _not_found(incident_id)
    doc: dict[str, Any] = json.loads(raw)
    doc["timeline"] = [json.loads(item) for item in timeline]
    doc["counters"] = {c: int(counters.get(c, 0)) for c in COUNTERS}
    return doc


def list_ids(svc: Services, *, active_only: bool, limit: int = 200) -> list[str]:
    if active_only:
        return sorted(cast("list[str]", svc.redis.hkeys(keys.incidents_active())), reverse=True)
    return list(cast("list[str]", svc.redis.zrevrange(keys.incidents_all(), 0, limit - 1)))


def applies(doc: Mapping[str, Any], listed: bool, customer: Customer | None
            ) -> tuple[bool, bool]:
    """(announce, affected) for one caller: affected when the number is in scope (`listed`,
    from the incident's number set), or a service or the region is; announced to everyone
    when the audience is `all`."""
    scope = doc.get("scope") or {}
    affected = bool(
        listed
        or (customer and set(customer.services) & set(scope.get("services", ())))
        or (customer and customer.region and customer.region in scope.get("regions", ()))
    )
    return doc.get("audience") == "all" or affected, affected


def in_language(texts: Mapping[str, str] | None, lang: str) -> str | None:
    """One of a supervisor's per-language texts for `lang`, else Japanese, else English:
    nobody hears or reads nothing because one language was left out."""
    texts = texts or {}
    return next((texts[x] for x in (lang, "ja", "en") if texts.get(x)), None)


def announcement_for(doc: Mapping[str, Any], lang: str) -> tuple[str | None, str | None]:
    """(recording URL, text) in the caller's language, falling back to the other one."""
    return in_language(doc.get("recordings"), lang), in_language(doc.get("announcement"), lang)


def latest_status(doc: Mapping[str, Any], lang: str) -> str | None:
    """The newest update text in the caller's language, if a supervisor posted one."""
    return in_language(doc.get("latest_update"), lang)
