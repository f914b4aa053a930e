"""A Twilio REST stand-in for local runs: logs each request and answers with plausible SIDs.

`scripts/dev` makes up credentials that Twilio would refuse, so without this the worker's
SMS and SV calls fail and a local incident cannot be followed end to end. With
TWILIO_API_BASE_URL set to the literal "console", `build_services` gives the Twilio client
this http client instead: nothing leaves the machine, and the log says what would have been
sent (method, resource, masked To, body length), never a body or a whole number. With
IVR_DEV_REST_LOG naming a file (scripts/dev sets .run/rest.log), the same lines are appended
there too, one per request, so another process (`ivr call --stay`) can show them.

It is a `TwilioHttpClient`, so everything above it (the twilio library's request building,
JSON parsing, `TwilioRestException` on an error status) runs exactly as in production.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from ivr.phone import mask

log = logging.getLogger(__name__)

CONSOLE = "console"
"""The TWILIO_API_BASE_URL value that selects this backend."""
JOURNAL_ENV = "IVR_DEV_REST_LOG"
"""The environment variable naming the file every handled request is appended to."""
REMEMBERED = 200
"""Messages kept in memory for `messages.list` (per process: an RQ work horse starts empty)."""

_RESOURCE = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-zA-Z]{32})/(?P<rest>.+)$")
_ACCOUNT = re.compile(r"AC[0-9a-zA-Z]{32}")
_CALL = re.compile(r"^Calls/(?P<sid>CA[0-9a-zA-Z]{32})\.json$")
_MESSAGE = re.compile(r"^Messages/(?P<sid>(SM|MM)[0-9a-zA-Z]{32})\.json$")


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID (two letters + 32 hex), random so runs never collide."""
    return prefix + secrets.token_hex(16)


def _one(values: Mapping[str, object] | None, name: str) -> str:
    value = (values or {}).get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return "" if value is None else str(value)


class ConsoleHttpClient(TwilioHttpClient):
    """Answer the REST calls the service makes (messages.create/list, calls.create,
    calls(sid).update/fetch) from memory and log them; anything else is a Twilio-style 404,
    so a new use of the API shows up as an error rather than silently "working"."""

    def __init__(self, journal: str | None = None) -> None:
        super().__init__(pool_connections=False, timeout=5.0)
        self._sent: deque[dict[str, Any]] = deque(maxlen=REMEMBERED)
        self._lock = threading.Lock()
        self.journal = journal if journal is not None else os.environ.get(JOURNAL_ENV) or None

    def _note(self, message: str, *args: object, level: int = logging.INFO) -> None:
        """Log one handled request, and append it to the journal file when there is one
        (masked like the log: the line is the log line)."""
        log.log(level, message, *args)
        if self.journal:
            line = (message % args if args else message).replace("\n", " ")
            try:
                with open(self.journal, "a", encoding="utf-8") as journal:
                    journal.write(line + "\n")  # one write() of a short line: not interleaved
            except OSError as e:
                log.warning("console twilio: cannot append to %s (%s)", self.journal, e)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        method = method.upper()
        path = urlsplit(url).path
        found = _RESOURCE.match(path)
        if found is None:
            return self._not_found(method, path)
        account, rest = found["account"], found["rest"]
        if rest == "Messages.json" and method == "POST":
            return self._send_message(account, data)
        if rest == "Messages.json" and method == "GET":
            return self._list_messages(params)
        if rest == "Calls.json" and method == "POST":
            return self._create_call(account, data)
        call = _CALL.match(rest)
        if call and method in ("POST", "GET"):
            return self._call(account, call["sid"], method, data)
        message = _MESSAGE.match(rest)
        if message and method == "GET":
            return self._fetch_message(message["sid"])
        return self._not_found(method, rest)

    def sent(self) -> list[dict[str, Any]]:
        """The messages this process 'sent', oldest first (for tests and `flask shell`)."""
        with self._lock:
            return list(self._sent)

    def _send_message(self, account: str, data: Mapping[str, object] | None) -> Response:
        sid = new_sid("SM")
        to, body = _one(data, "To"), _one(data, "Body")
        sender = _one(data, "MessagingServiceSid") or _one(data, "From")
        record = {
            "sid": sid, "account_sid": account, "to": to, "from": sender, "body": body,
            "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "date_created": formatdate(usegmt=True), "error_code": None,
            "api_version": "2010-04-01",
        }
        with self._lock:
            self._sent.append(record)
        self._note("console twilio: POST Messages to=%s body_chars=%s message_sid=%s",
                   mask(to), len(body), sid)
        return _json(201, record)

    def _list_messages(self, params: Mapping[str, object] | None) -> Response:
        to = _one(params, "To")
        with self._lock:
            found = [m for m in reversed(self._sent) if not to or m["to"] == to]
        self._note("console twilio: GET Messages to=%s found=%s", mask(to) if to else "*",
                   len(found))
        return _json(200, {"messages": found, "end": max(len(found) - 1, 0), "start": 0,
                           "page": 0, "page_size": 50, "next_page_uri": None,
                           "previous_page_uri": None, "uri": "/Messages.json"})

    def _fetch_message(self, sid: str) -> Response:
        with self._lock:
            found = next((m for m in self._sent if m["sid"] == sid), None)
        self._note("console twilio: GET Messages/%s found=%s", sid, found is not None)
        if found is None:
            return _error(404, 20404, f"The requested resource {sid} was not found")
        return _json(200, found)

    def _create_call(self, account: str, data: Mapping[str, object] | None) -> Response:
        sid = new_sid("CA")
        to = _one(data, "To")
        # The webhook path and its ASCII ids say which leg this is (/voice/sv-whisper?call=…),
        # which is what a developer following the log needs; no number is in it.
        target = urlsplit(_one(data, "Url"))
        where = target.path + (f"?{target.query}" if target.query else "")
        self._note("console twilio: POST Calls to=%s url=%s call_sid=%s (nobody will answer: "
                   "drive that leg with `ivr call --path`)", mask(to), where or "-", sid)
        return _json(201, {"sid": sid, "account_sid": account, "to": to,
                           "from": _one(data, "From"), "status": "queued",
                           "direction": "outbound-api", "api_version": "2010-04-01",
                           "date_created": formatdate(usegmt=True)})

    def _call(self, account: str, sid: str, method: str,
              data: Mapping[str, object] | None) -> Response:
        status = _one(data, "Status") or "in-progress"
        if method == "POST":
            target = urlsplit(_one(data, "Url"))
            query = f"?{target.query}" if target.query else ""
            change = f"url={target.path}{query}" if target.path else f"status={status}"
            self._note("console twilio: POST Calls/%s %s call_sid=%s", sid, change, sid)
        else:
            self._note("console twilio: GET Calls/%s call_sid=%s", sid, sid)
        return _json(200, {"sid": sid, "account_sid": account, "status": status,
                           "api_version": "2010-04-01"})

    def _not_found(self, method: str, path: str) -> Response:
        self._note("console twilio: %s %s is not simulated; answering 404", method,
                   _ACCOUNT.sub("AC…", path), level=logging.WARNING)
        return _error(404, 20404, "The local REST stand-in does not simulate this resource")


def _json(status: int, payload: Mapping[str, Any]) -> Response:
    return Response(status, json.dumps(payload), {"Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> Response:
    return _json(status, {"code": code, "message": message, "status": status,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}"})


def journal_size(path: str | None) -> int:
    """Where the journal ends now (0 when there is none yet): `follow` starts there."""
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def follow(path: str, start: int, seconds: float, write: Callable[[str], None], *,
           pause: Callable[[float], None] = time.sleep, interval: float = 0.5) -> int:
    """Write the journal lines appended after byte `start`: those already there, then new
    ones for `seconds` (polled every `interval`, a bounded number of times, so a frozen
    clock cannot make it spin). Returns how many lines were written."""
    position, written = start, 0

    def drain() -> None:
        nonlocal position, written
        try:
            with open(path, "rb") as journal:
                journal.seek(position)
                chunk = journal.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        position += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            write(line)
            written += 1

    drain()
    for _ in range(max(1, math.ceil(seconds / interval))):
        pause(interval)
        drain()
    return written
