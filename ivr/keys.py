"""Every Redis key the service uses, with its type and lifetime (docs/redis-keys.md).

Keys are `{ivr}:<noun>:<id>[:<facet>]`. Ephemeral keys carry a TTL; incidents,
customers, supervisors and tokens do not expire.

The `{ivr}` hash tag puts every key in one Redis Cluster slot. The caller's path is one Lua
script that reads the customer and the active incidents and writes the call record, the
repeat-caller window, the global indexes and the counters together; Cluster refuses a script
whose keys span slots, so the keys share one. The whole dataset then lives on one shard
(a million customers is about 0.5 GB): Cluster is supported for its failover and for
managed services that only offer cluster mode, not to spread the data.
"""

from __future__ import annotations

PREFIX = "{ivr}"

CALL_TTL = 7 * 86400
"""Call records stay a week, long enough for the post-incident report."""
RECENT_CALLS_MAX = 50_000
"""How many call ids the recent-calls index keeps (trimmed once a minute, by the stale-call
sweep in ivr/lua/incoming.lua)."""


def incident(incident_id: str) -> str:
    """String: the incident document (JSON). No TTL."""
    return f"{PREFIX}:incident:{incident_id}"


def incident_timeline(incident_id: str) -> str:
    """List: JSON timeline entries, oldest first. No TTL."""
    return f"{PREFIX}:incident:{incident_id}:timeline"


def incident_numbers(incident_id: str) -> str:
    """Set: the phone numbers in an unresolved incident's scope, which its copy in
    incidents_active leaves out (incident.store_active); removed at resolution. No TTL."""
    return f"{PREFIX}:incident:{incident_id}:numbers"


def incident_counters(incident_id: str) -> str:
    """Hash: calls, affected_calls, escalations, sms_sent, sms_delivered, sms_failed.
    No TTL."""
    return f"{PREFIX}:incident:{incident_id}:counters"


def incidents_all() -> str:
    """Sorted set: incident id scored by declaration time (epoch seconds). No TTL."""
    return f"{PREFIX}:incidents:all"


def incidents_active() -> str:
    """Hash: incident id -> incident JSON for every unresolved incident, without
    scope.numbers (scope.number_count instead; the numbers are in incident_numbers, written
    in the same MULTI); the voice path reads this key and asks those sets, so every caller
    is told the same thing. Copies from before the number sets are rewritten when the app
    starts (incident.upgrade_active). No TTL."""
    return f"{PREFIX}:incidents:active"


def customer(phone: str) -> str:
    """Hash: one customer by E.164 number. No TTL."""
    return f"{PREFIX}:customer:{phone}"


def customers_all() -> str:
    """Set: E.164 numbers of every customer. No TTL."""
    return f"{PREFIX}:customers:all"


def customers_by_service(service: str) -> str:
    """Set: E.164 numbers of customers who use a service. No TTL."""
    return f"{PREFIX}:customers:service:{service}"


def customers_by_region(region: str) -> str:
    """Set: E.164 numbers of customers in a region. No TTL."""
    return f"{PREFIX}:customers:region:{region}"


def sms_optout() -> str:
    """Set: the service's own SMS suppression list (E.164). No TTL."""
    return f"{PREFIX}:sms:optout"


def call(call_sid: str) -> str:
    """Hash: one call record (from, tags JSON, incidents, state, transcript…). TTL CALL_TTL."""
    return f"{PREFIX}:call:{call_sid}"


def calls_recent() -> str:
    """Sorted set: CallSid scored by arrival (epoch seconds), trimmed to the newest
    RECENT_CALLS_MAX once a minute (with the stale-call sweep). No TTL (bounded by the trim)."""
    return f"{PREFIX}:calls:recent"


def calls_active() -> str:
    """Sorted set: CallSid of calls not yet completed, scored by arrival. Members leave on
    the status callback. No TTL."""
    return f"{PREFIX}:calls:active"


def calls_swept() -> str:
    """String: the epoch of the last sweep of stale calls out of calls_active and waiting
    (ivr/lua/incoming.lua), which sweeps again a minute later at the earliest. No TTL (one key)."""
    return f"{PREFIX}:calls:swept"


def waiting() -> str:
    """Sorted set: CallSid of callers waiting for an operator, scored band * 1e13 + enqueue
    time in ms, so ZPOPMIN gives priority > affected/VIP > others, first come first served.
    Members leave when an operator takes them or the call ends. No TTL."""
    return f"{PREFIX}:queue:waiting"


SMS_TTL = 7 * 86400
"""Message records and send claims outlive any retry, resend or status callback by far."""


def sms_undeliverable(phone: str) -> str:
    """String: JSON {error_code, until} of the refusal that marked a number undeliverable
    (21211, 21614, 21635, 30004-30006); every fan-out skips it. TTL flows/sms.yaml
    undeliverable_days; an upsert of the customer or START deletes it (ivr.undeliverable)."""
    return f"{PREFIX}:sms:undeliverable:{phone}"


def sms_claim(incident_id: str, seq: int | str, phone: str) -> str:
    """String: 'pending:<epoch>:<token>' while a send is in flight (renewed by its sender
    just before each request to Twilio), then the Twilio MessageSid (or
    'failed:<code>'); guards one message per (incident, update, number). `seq` is the
    timeline entry, or a label for one-off messages ('subscribed', 'resend-<n>').
    TTL SMS_TTL."""
    return f"{PREFIX}:sms:claim:{incident_id}:{seq}:{phone}"


def sms_message(message_sid: str) -> str:
    """Hash: one sent message (incident_id, seq, to, status, error_code, segments, counted).
    TTL SMS_TTL."""
    return f"{PREFIX}:sms:msg:{message_sid}"


def sms_audience(incident_id: str, seq: int) -> str:
    """Set: the recipients of one fan-out, frozen when it starts so a restarted fan-out and
    its sweep see the same list. TTL SMS_AUDIENCE_TTL."""
    return f"{PREFIX}:sms:audience:{incident_id}:{seq}"


SMS_AUDIENCE_TTL = 2 * 86400


def sms_halt(incident_id: str, seq: int) -> str:
    """String: the Twilio error code that stopped a fan-out (21408, 30007): nothing more is
    sent for it until a supervisor looks. TTL SMS_TTL."""
    return f"{PREFIX}:sms:halt:{incident_id}:{seq}"


def sms_reminder(incident_id: str, due: int) -> str:
    """String JSON: the reminder sent to the on-call SV before the update due at epoch `due`
    (to, sent_at); also guards sending it twice. TTL SMS_TTL."""
    return f"{PREFIX}:sms:reminder:{incident_id}:{due}"


SMS_INBOUND_TTL = 86400
"""How long a handled inbound MessageSid is remembered; Twilio retries within minutes."""


def sms_inbound(message_sid: str) -> str:
    """String: '1' once an inbound SMS (/sms/incoming) was handled, so a retried webhook
    replies nothing. TTL SMS_INBOUND_TTL."""
    return f"{PREFIX}:sms:in:{message_sid}"


def sms_rate() -> str:
    """Sorted set: the send-rate limiter's grants of the last second, shared by every worker;
    member '<time_us>:<segments>:<random>' scored by the grant's Redis time in microseconds.
    TTL one window (1 s; 1/rate s below 1/s) past the newest grant."""
    return f"{PREFIX}:sms:rate"


def incident_subscribers(incident_id: str) -> str:
    """Set: numbers that asked for this incident's updates by key press while waiting.
    No TTL."""
    return f"{PREFIX}:incident:{incident_id}:subscribers"


def caller_calls(phone: str) -> str:
    """Sorted set: CallSids from one number scored by arrival (epoch seconds), the repeat-caller
    window; trimmed to the window on every call. TTL the window (flows/escalation.yaml)."""
    return f"{PREFIX}:caller:{phone}:calls"


def escalation_log(call_sid: str) -> str:
    """List: JSON of each SV attempt of a call's escalation (who, result, when). TTL that of
    the call record."""
    return f"{PREFIX}:call:{call_sid}:escalation"


def escalation_leg(call_sid: str, attempt: int) -> str:
    """String: 'pending', then the SV leg's CallSid; guards one dial-out per attempt.
    TTL ESCALATION_LEG_TTL."""
    return f"{PREFIX}:call:{call_sid}:leg:{attempt}"


ESCALATION_LEG_TTL = 6 * 3600


def escalations_raised_by(name: str) -> str:
    """Sorted set: CallSids an operator (token owner) escalated, scored by time; the outcome
    feed for that operator. TTL CALL_TTL, refreshed on each escalation."""
    return f"{PREFIX}:escalations:raised-by:{name}"


AGENT_ASSIGNMENT_TTL = 3600


def agent_assignment(agent_call_sid: str) -> str:
    """String: the caller's CallSid given to one operator leg, so a retried operator-line
    webhook hands over the same caller. TTL AGENT_ASSIGNMENT_TTL."""
    return f"{PREFIX}:agent:{agent_call_sid}:caller"


def supervisor_roster() -> str:
    """Hash: E.164 phone -> supervisor JSON (name, skills, level, on_call, order, lang,
    updated_at, updated_by), the whole on-call roster in one key, so a roster replace is one
    MULTI (DEL + HSET) and the escalation ladder is one HGETALL. At most
    supervisor.MAX_ROSTER fields. No TTL."""
    return f"{PREFIX}:supervisors:roster"


def token(token_hash: str) -> str:
    """Hash: an API token by its SHA-256 (name = the owner's login, person_id, token_id,
    created_at, created_by). No TTL; deleted when revoked or its person is deactivated."""
    return f"{PREFIX}:token:{token_hash}"


def token_ref(token_id: str) -> str:
    """String: the SHA-256 of the token with this id, so DELETE /api/tokens/<id> finds it.
    No TTL; deleted with the token."""
    return f"{PREFIX}:token_id:{token_id}"


def person(person_id: str) -> str:
    """Hash: one person (login, name, role, phone, active, session_epoch, password_hash,
    created_at, created_by, updated_at, updated_by). No TTL."""
    return f"{PREFIX}:person:{person_id}"


def people() -> str:
    """Sorted set: every person id scored by creation time (epoch seconds). No TTL."""
    return f"{PREFIX}:people"


def person_login(login: str) -> str:
    """String: the person id that holds a login (lower case), so logins stay unique. No TTL."""
    return f"{PREFIX}:person_login:{login}"


def person_tokens(person_id: str) -> str:
    """Set: the token ids of one person, all revoked at once on deactivation. No TTL."""
    return f"{PREFIX}:person:{person_id}:tokens"


SIGNIN_WINDOW = 15 * 60
"""Seconds a failed sign-in or a bad token counts against a login, a person or an address."""


def auth_failures(kind: str, subject: str, window: int) -> str:
    """String counter: failed sign-ins (kind 'login'/'client') or bad tokens ('token_client',
    'token_person') of one subject (a login, address or token id as a SHA-256 prefix) in one
    fixed window (epoch seconds // SIGNIN_WINDOW). TTL 2 * SIGNIN_WINDOW from the first."""
    return f"{PREFIX}:auth_fail:{kind}:{subject}:{window}"


# --- Metrics (ivr/metrics.py reads these at scrape time) -------------------------------------
# Counters shared by every web process and worker host, written inside the Lua scripts that
# already run for the event, so counting adds no round trip. Fields are bounded label values,
# never ids. The numbers only grow; Prometheus takes rates.


def metrics_calls_by_kinds() -> str:
    """Hash: a call's combination of tag kinds ("affected,vip", "repeat", "untagged"; kinds
    in METRIC_TAGS order) -> calls that came in with it, counted once per CallSid by
    ivr/lua/incoming.lua; field 'priority' -> calls an escalation script first moved to the
    priority band. /metrics adds the combinations up per kind (metrics.calls_by_tag).
    It replaces `calls_by_tag` (one field per kind, now in RETIRED): under a new name,
    Prometheus sees a counter reset rather than old and new counts added together. No TTL
    (at most 9 fields)."""
    return f"{PREFIX}:metrics:calls_by_kinds"


def metrics_sms() -> str:
    """Hash: sent, delivered, failed -> SMS of every incident together, counted exactly once
    per message beside the incident's own sms_* counter (worker/sms.py, ivr/delivery.py), so
    a scrape reads one hash however many incidents there have been. No TTL (three fields)."""
    return f"{PREFIX}:metrics:sms"


def metrics_escalations() -> str:
    """Hash: '<reason>|<outcome>' -> escalations that ended so (accepted, exhausted,
    abandoned), counted by the Lua script that makes the final transition. No TTL (fields
    are bounded: flows.REASONS x three outcomes)."""
    return f"{PREFIX}:metrics:escalations"


def metrics_escalation_attempts() -> str:
    """Hash: '<reason>|<result>' -> SV attempts given up (declined, timeout, busy, no-answer,
    failed, canceled, completed), counted by ivr/lua/escalation_advance.lua. No TTL (fields are
    bounded)."""
    return f"{PREFIX}:metrics:escalation_attempts"


RETIRED_UNDELIVERABLE = f"{PREFIX}:sms:undeliverable"
"""Set: the undeliverable numbers of earlier versions, without expiry: ivr.upgrade turns
them into sms_undeliverable marks, then removes it with the rest of RETIRED."""
RETIRED = (f"{PREFIX}:metrics:calls_by_tag",
           f"{PREFIX}:seq:incident",  # the counter incident ids came from (incident.new_id)
           RETIRED_UNDELIVERABLE)
"""Keys earlier versions wrote and nothing reads any more: ivr.upgrade removes them when the
app starts, so they do not stay in Redis (none has a TTL) for ops to wonder about."""


ALL = (sms_undeliverable, sms_claim, sms_message, sms_inbound, sms_rate, sms_audience, sms_halt,
       sms_reminder, incident_subscribers,
       incident, incident_timeline, incident_numbers, incident_counters, incidents_all,
       incidents_active,
       customer, customers_all, customers_by_service, customers_by_region,
       sms_optout, caller_calls, call, escalation_log, escalation_leg,
       escalations_raised_by, calls_recent, calls_active, calls_swept, waiting,
       agent_assignment, token, token_ref, person, people, person_login, person_tokens,
       auth_failures,
       supervisor_roster,
       metrics_calls_by_kinds, metrics_sms, metrics_escalations, metrics_escalation_attempts)
