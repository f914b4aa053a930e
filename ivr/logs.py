"""One JSON object per log line, phone numbers, opt-out tokens and secrets masked; set up by
entry points only.

Nothing here runs at import. `gunicorn.conf.py` passes `dict_config()` to gunicorn as its
`logconfig_dict`; `worker.worker_services()` calls `configure()` the first time a job needs it.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import os
import re
import time
from collections.abc import Mapping
from json.encoder import encode_basestring as _json  # a JSON string literal, non-ASCII kept
from typing import IO, Any

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
from rq import get_current_job

CONTEXT_FIELDS = ("call_sid", "message_sid", "job_id")
MASK = "***"

# Loggers of libraries that add their own plain-text handlers; they are routed to the root
# logger so that every line is JSON and passes the masking filter.
ROUTED_TO_ROOT = ("gunicorn.error", "gunicorn.access", "rq.worker", "rq.scheduler")

_CONTEXT_IN_MESSAGE = re.compile(r"\b(call_sid|message_sid|job_id)=([A-Za-z0-9_-]+)")
# What each field must look like to be taken from a message: a Twilio SID (two letters and 32
# hex), or one of our job ids. Anything else is text a caller may have chosen.
CONTEXT_SHAPES = {
    "call_sid": re.compile(r"CA[0-9a-f]{32}"),
    "message_sid": re.compile(r"(?:SM|MM)[0-9a-f]{32}"),
    "job_id": re.compile(r"[A-Za-z0-9_-]{1,200}"),
}
# Loggers whose messages are our own words; gunicorn's access log, for one, repeats the
# request line as received, so an id in it is whatever the sender wrote.
_OWN_LOGGERS = ("ivr", "worker", "rq")

# The patterns that run on every line start with the character they look for and check what
# comes before it afterwards: a pattern that opens with a lookbehind is tried at every
# position of the line, one that opens with a literal is found by a fast scan (3-7x cheaper).
# +819012345678 and its form-encoded spelling %2B819012345678, not inside a longer word.
_E164 = re.compile(r"(?:\+(?<![\w+%]\+)|%(?<![\w%]%)2[Bb])([1-9]\d{6,14})(?!\d)")
# Japanese national numbers: 090-1234-5678, 03 1234 5678, 09012345678, 0120-123-456.
_JP_NATIONAL = re.compile(r"0(?<![\w+-]0)\d{1,4}(?:[- ]?\d{1,4}){1,2}(?![\w-])")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}")
_SECRET_PAIR = re.compile(
    r"(?i)(?<![A-Za-z0-9])([\w-]*(?:token|secret|password|passwd|api[_-]?key|pin|signature))"
    r"([\"']?\s*[=:]\s*[\"']?)([^\s\"'&,;)}\]]+)"
)
# A 32-hex string right after a secret's name and a space ("token 0123...", "auth token
# 0123..."): the key=value spellings are _SECRET_PAIR's. A bare 32-hex string is left alone:
# RQ's worker names, its pub/sub channels and the hex half of every Twilio SID have that shape
# and must stay readable; the configured secrets themselves are masked by value (MaskFilter).
_NAMED_HEX = re.compile(
    r"(?i)\b((?:token|secret|password|key)s?)(\s+)[0-9a-f]{32,}(?![0-9A-Za-z])")
# The API tokens of people (ivr.person.issue_token).
_IVR_TOKEN = re.compile(r"\bivr_[A-Za-z0-9_-]{16,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# SMS opt-out links, /u/<token> (ivr.optout): the token decodes to the phone number. Also
# form- or URL-encoded (%2Fu%2F<token>).
_OPTOUT_TOKEN = re.compile(r"(?i)((?:/|%2F)u(?:/|%2F))[A-Za-z0-9_-]+")


def _mask_e164(match: re.Match[str]) -> str:
    digits = match.group(1)
    plus = match.group(0)[: -len(digits)]
    code = next(
        (digits[:n] for n in (1, 2, 3) if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE),
        digits[:2],
    )
    return f"{plus}{code}******{digits[-4:]}"


def _mask_national(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    if not 10 <= digits <= 11:  # a Japanese number has 10 (fixed) or 11 (mobile) digits
        return text
    seen, out = 0, []
    for c in text:
        if c.isdigit():
            seen += 1
            out.append(c if seen == 1 or seen > digits - 4 else "*")
        else:
            out.append(c)
    return "".join(out)


def mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Hide phone numbers (all but the country code and the last four digits), opt-out link
    tokens and secrets: named ones (token=..., Bearer ...), and the values in `secrets`
    wherever they appear. Ids (SIDs, RQ worker names, job ids) are kept."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    lower = text.lower()  # the costly patterns run only when their keyword is there
    if "u/" in lower or "u%2f" in lower:
        text = _OPTOUT_TOKEN.sub(lambda m: f"{m.group(1)}{MASK}", text)
    if "bearer" in lower or "basic" in lower:
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if ("token" in lower or "secret" in lower or "passw" in lower or "api" in lower
            or "pin" in lower or "signature" in lower):  # _SECRET_PAIR's words
        text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if "eyj" in lower:
        text = _JWT.sub(MASK, text)
    if "ivr_" in lower:
        text = _IVR_TOKEN.sub("ivr_" + MASK, text)
    if "token" in lower or "secret" in lower or "passw" in lower or "key" in lower:
        text = _NAMED_HEX.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if "+" in text or "%2" in text:
        text = _E164.sub(_mask_e164, text)
    return _JP_NATIONAL.sub(_mask_national, text)


SECRET_SETTINGS = ("TWILIO_AUTH_TOKEN", "IVR_ADMIN_TOKEN", "IVR_METRICS_TOKEN")
"""Settings whose values never appear in a log line, whatever surrounds them."""
_SHORTEST_SECRET = 8  # a shorter value would mask ordinary words


def secrets_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of SECRET_SETTINGS that are set (long enough to be told from words)."""
    env = os.environ if environ is None else environ
    return tuple(value for name in SECRET_SETTINGS
                 if len(value := env.get(name, "")) >= _SHORTEST_SECRET)


class MaskFilter(logging.Filter):
    """Format the message with its args, then mask it; tracebacks are masked the same way.

    Placed on the handler, so it sees records of every logger that reaches it. It never drops
    a record and never raises. `secrets`: values masked wherever they appear (by default the
    secret settings of the environment, read when the filter is built).
    """

    _traceback = logging.Formatter()

    def __init__(self, secrets: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.secrets = secrets_from_env() if secrets is None else tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller
            message = f"{record.msg!r} args={record.args!r}"
        record.msg, record.args = mask(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        return True


class ContextFilter(logging.Filter):
    """Give each record call_sid / message_sid / job_id when it has them.

    Taken from `extra=`, else from "call_sid=..." in a message of our own loggers when the
    value has the field's shape (CONTEXT_SHAPES: a Twilio SID for the sids), else (job_id,
    when `jobs`) from the RQ job this process is running. So a sender cannot set a field by
    writing "call_sid=..." into a form value or a URL. Web processes run no jobs and skip the
    lookup.
    """

    def __init__(self, jobs: bool = True) -> None:
        super().__init__()
        self.jobs = jobs

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in _OWN_LOGGERS
        message = record.getMessage() if own else ""
        if "_sid=" in message or "job_id=" in message:
            for name, value in _CONTEXT_IN_MESSAGE.findall(message):
                if (getattr(record, name, None) is None
                        and CONTEXT_SHAPES[name].fullmatch(value)):
                    setattr(record, name, value)
        if self.jobs and getattr(record, "job_id", None) is None:
            job = get_current_job()
            if job is not None:
                record.job_id = job.id
        return True


def looks_like(name: str, value: object) -> bool:
    """Whether `value` has the shape of the context field `name` (a Twilio SID for the
    sids): a view logs a form's CallSid only when it does."""
    return isinstance(value, str) and CONTEXT_SHAPES[name].fullmatch(value) is not None


@functools.lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    """'2026-11-23T22:15:07' (UTC): every line of the same second shares it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def _timestamp(created: float) -> str:
    """ISO 8601 UTC to the millisecond, as datetime.isoformat(timespec="milliseconds") writes
    it: rounded to the microsecond, then cut (never stamped into the next second)."""
    seconds, micros = divmod(round(created * 1_000_000), 1_000_000)
    return f"{_second(seconds)}.{micros // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context ids, exc when raised.

    Written field by field with json's own string encoder rather than json.dumps of a dict:
    the same text (json.dumps' separators, non-ASCII kept) at a third of the cost, which
    matters on the webhook path where every call logs a line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = (f'{{"ts": "{_timestamp(record.created)}", "level": {_json(record.levelname)}, '
                f'"logger": {_json(record.name)}, "msg": {_json(record.getMessage())}')
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line += f', "{name}": {_json(str(value))}'
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += f', "exc": {_json(record.exc_text)}'
        return line + "}"


def lean_records() -> None:
    """Stop every log record gathering what no JSON line prints: the calling file and line
    (a walk up the stack), thread and process names. A quarter of a line's cost on the
    webhook path. These are the switches the logging HOWTO's "Optimization" section names.
    Without the caller lookup `stack_info=True` prints nothing either (logging finds the
    stack there); tracebacks (`exc_info`, log.exception) are kept and masked.
    """
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def dict_config(level: str | int = "INFO", *, stream: IO[str] | None = None,
                jobs: bool = True) -> dict[str, Any]:
    """The logging.config.dictConfig dict: JSON lines to stderr (or `stream`), masked.
    `jobs`: the process runs RQ jobs, so lines name the job they came from."""
    level = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "mask": {"()": MaskFilter},
            "context": {"()": ContextFilter, "jobs": jobs},
        },
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "stream": stream if stream is not None else "ext://sys.stderr",
                "formatter": "json",
                "filters": ["mask", "context"],
            },
        },
        "root": {"level": level, "handlers": ["json"]},
        "loggers": {name: {"handlers": [], "propagate": True} for name in ROUTED_TO_ROOT},
    }


def configure(level: str | int = "INFO", *, stream: IO[str] | None = None) -> None:
    """Send every log record of this process through the masked JSON handler on the root logger.

    Call it from an entry point (gunicorn config, worker), never at import time.
    """
    lean_records()
    logging.config.dictConfig(dict_config(level, stream=stream))
