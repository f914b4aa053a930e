"""A small Twilio-compatible REST server for tests: records every request, answers with SIDs.

Tests point TWILIO_API_BASE_URL at it and assert on `requests`; nothing in the twilio
library is patched.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, list[str]]

    def one(self, name: str) -> str:
        return self.form[name][0]


@dataclass
class FakeTwilio:
    """The server's state; `fail_next` queues (status, twilio_code) answers to give first.

    `delay` makes each request take that long before it is recorded. Clearing `gate` holds
    every request that arrives after it (counted in `held`) until it is set again, and only
    then records and answers it: a client that dies meanwhile leaves a request Twilio took.
    `hold_after`, when set, clears `gate` once, as soon as that many messages have been
    taken, so the next request is held whatever the sender's speed. `on_message`, when set,
    runs with each message Twilio took, before the sender hears back: a sender held up right
    after Twilio accepted its message. `wait_until` blocks until the server's state passes a
    check, woken by the server itself rather than by polling.
    """

    requests: list[Recorded] = field(default_factory=list)
    fail_next: list[tuple[int, int]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""
    gate: threading.Event = field(default_factory=threading.Event)
    held: int = 0
    hold_after: int | None = None
    on_message: Callable[[dict[str, Any]], None] | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)
        self.gate.set()

    def wait_until(self, check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
        """Return once `check()` holds; `limit` only stops a test that would hang."""
        with self._changed:
            if not self._changed.wait_for(check, timeout=limit):
                raise AssertionError(f"the fake Twilio never reached: {what}")

    def calls_updated(self) -> list[Recorded]:
        return [r for r in self.requests
                if r.method == "POST" and re.search(r"/Calls/CA[^/]+\.json$", r.path)]

    def messages_sent(self) -> list[Recorded]:
        return [r for r in self.requests
                if r.method == "POST" and r.path.endswith("/Messages.json")]

    def calls_created(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Calls.json")]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.fail_next.clear()
            self.messages.clear()
            self.delay = 0.0
            self.hold_after = None
            self.on_message = None
        self.gate.set()

    def sent_to(self) -> dict[str, int]:
        """How many messages Twilio accepted per number."""
        counts: dict[str, int] = {}
        for message in self.messages:
            counts[message["to"]] = counts.get(message["to"], 0) + 1
        return counts

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        form = parse_qs(req.get_data(as_text=True), keep_blank_values=True)
        if self.delay:
            time.sleep(self.delay)
        if not self.gate.is_set():
            with self._changed:
                self.held += 1
                self._changed.notify_all()
            self.gate.wait(timeout=60)
            with self._changed:
                self.held -= 1
                self._changed.notify_all()
        with self._changed:
            self.requests.append(Recorded(req.method, req.path, form))
            self._changed.notify_all()
            failure = self.fail_next.pop(0) if self.fail_next and req.method == "POST" else None
            n = next(self._ids)
        if failure:
            status, code = failure
            body = {"code": code, "message": f"fake failure {code}", "status": status,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}"}
            return Response(json.dumps(body), status, mimetype="application/json")(
                environ, start_response)
        account = req.path.split("/")[3] if req.path.count("/") >= 3 else "AC0"
        answer: dict[str, Any] = {"account_sid": account, "status": "queued"}
        m = re.search(r"/Calls/(CA[^/]+)\.json$", req.path)
        if m:
            answer.update(sid=m.group(1), status="in-progress")
        elif req.path.endswith("/Calls.json"):
            answer.update(sid=f"CA{n:032x}", to=form.get("To", [""])[0], status="queued")
        elif req.path.endswith("/Messages.json") and req.method == "POST":
            answer.update(sid=f"SM{n:032x}", to=form.get("To", [""])[0],
                          body=form.get("Body", [""])[0], num_segments="1",
                          date_created=formatdate(usegmt=True))
            with self._changed:
                self.messages.append(answer)
                if self.hold_after is not None and len(self.messages) >= self.hold_after:
                    self.hold_after = None  # once: the test opens the gate again itself
                    self.gate.clear()
                self._changed.notify_all()
            if self.on_message is not None:
                self.on_message(answer)
        elif req.path.endswith("/Messages.json"):
            to = req.args.get("To")
            with self._lock:
                found = [m for m in reversed(self.messages) if to in (None, m["to"])]
            answer = {"messages": found, "meta": {"page": 0, "page_size": 50,
                                                  "key": "messages", "next_page_url": None}}
        return Response(json.dumps(answer), 201 if req.method == "POST" else 200,
                        mimetype="application/json")(environ, start_response)


class FakeTwilioServer:
    """Runs a FakeTwilio on 127.0.0.1:<free port> in a thread."""

    def __init__(self) -> None:
        self.app = FakeTwilio()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.app.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
