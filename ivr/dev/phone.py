"""A local stand-in for a phone: drive a running instance exactly as Twilio would.

`Phone.call()` POSTs the signed webhooks Twilio sends for an inbound call (/voice/incoming,
then every <Gather> action, <Redirect> and <Enqueue waitUrl>, finally the /voice/status
callback) and reports what the caller hears, turn by turn. `Phone.text()` sends one signed
/sms/incoming and reports the <Message> replies. Nothing here imports the app: it talks HTTP
to whatever serves PUBLIC_BASE_URL, so it exercises the signature check, the TwiML and Redis
exactly as a real call does. `ivr call` and `ivr sms` (ivr/cli.py) are its command line.

What it does not simulate: audio, barge-in, the other side of a <Dial> (the simulator stops
when the caller is joined to a conference or left waiting in a queue; with `stay` it holds
the line a while and shows what the REST stand-in, ivr.dev.rest, was asked meanwhile, such
as the SV being rung), and Twilio's own retries. Everything is bounded (MAX_TURNS
webhooks, HTTP_TIMEOUT per request).
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urljoin

from twilio.request_validator import RequestValidator

from ivr.dev.rest import JOURNAL_ENV, follow, journal_size

MAX_TURNS = 20
HTTP_TIMEOUT = 10.0
CONFIDENCE = "0.9"
DEFAULT_TO = "+815012345678"
ACCOUNT_SID = "AC" + "0" * 32


class PhoneError(RuntimeError):
    """The instance could not be reached or answered something Twilio would not accept."""


@dataclass(frozen=True)
class Input:
    """One thing the caller does at a <Gather>: say words, or press keys."""

    kind: Literal["speech", "digits"]
    value: str

    @classmethod
    def typed(cls, text: str) -> Input:
        """What someone typed at the interactive prompt: keys if it is only 0-9*#."""
        text = text.strip()
        if text and all(ch in "0123456789*#" for ch in text):
            return cls("digits", text)
        return cls("speech", text)


Ask = Callable[[str], str | None]
"""Interactive input: given the gather's description, the typed line, or None for silence."""


@dataclass
class Printer:
    """Writes the transcript: emoji lines for a terminal, plain `SAY:` lines for pipes and
    tests. Every line is also kept in `lines` so callers can inspect the transcript."""

    write: Callable[[str], None]
    fancy: bool = False
    lines: list[str] = field(default_factory=list)

    def __call__(self, kind: str, text: str) -> None:
        icons = {"CALL": "📞", "TURN": "──", "SAY": "🔊", "PLAY": "🎵", "PAUSE": "⏸ ",
                 "GATHER": "👂", "CALLER": "🗣 ", "QUEUE": "⏳", "CONFERENCE": "🎧",
                 "DIAL": "☎️ ", "HANGUP": "📴", "END": "🏁", "MESSAGE": "💬", "SMS": "✉️ ",
                 "ERROR": "⚠️ ", "NOTE": "· ", "REST": "🛰 "}
        text = text.replace("\n", "\n    ")  # a multi-line SMS stays under its marker
        line = f"{icons.get(kind, kind)} {text}" if self.fancy else f"{kind}: {text}"
        self.lines.append(line)
        self.write(line)

    @property
    def transcript(self) -> str:
        return "\n".join(self.lines)


@dataclass
class CallResult:
    """How the simulated call ended: `outcome` is hangup, queue, conference, dial, error or
    max-turns."""

    call_sid: str
    outcome: str
    turns: int
    transcript: str


class _Stop(Exception):
    """Raised inside the TwiML walk when the call leaves the caller's hands."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class Phone:
    """One caller's phone. Each webhook is signed with the auth token over the exact URL
    requested (PUBLIC_BASE_URL + path + query), as Twilio does.

    Args:
        base_url: where the instance listens (http://127.0.0.1:5000).
        public_url: the PUBLIC_BASE_URL the instance signs against, when it differs from
            `base_url` (a tunnel): URLs under it are sent to `base_url`, signed as public.
    """

    def __init__(self, base_url: str, auth_token: str, from_: str, *, to: str = DEFAULT_TO,
                 public_url: str | None = None, printer: Printer | None = None,
                 max_turns: int = MAX_TURNS, wait_loops: int = 1,
                 timeout: float = HTTP_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = (public_url or base_url).rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.from_, self.to = from_, to
        self.out = printer or Printer(write=print)
        self.max_turns, self.wait_loops, self.timeout = max_turns, wait_loops, timeout
        self.call_sid = ""
        self.turns = 0

    # -- HTTP ------------------------------------------------------------------------------

    def _post(self, url: str, form: Mapping[str, str]) -> tuple[int, bytes, str]:
        """POST `form` to the absolute `url`, signed over that URL; (status, body, type)."""
        target = url
        if url.startswith(self.public_url + "/") and self.public_url != self.base_url:
            target = self.base_url + url[len(self.public_url):]
        signature = self.validator.compute_signature(url, dict(form))
        request = urllib.request.Request(
            target, data=urlencode(form).encode("utf-8"), method="POST",
            headers={"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1 (ivr)",
                     "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return (int(response.status), response.read(),
                        response.headers.get_content_type())
        except urllib.error.HTTPError as e:
            with e:
                return int(e.code), e.read(), e.headers.get_content_type()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise PhoneError(f"cannot reach {target}: {reason} (is the instance running? "
                             "scripts/dev or `ivr dev` starts one)") from None

    def _twiml(self, url: str, form: Mapping[str, str]) -> ET.Element:
        """One turn: a webhook request answered with TwiML, or a PhoneError saying why
        Twilio would play its application-error message instead."""
        if self.turns >= self.max_turns:
            raise _Stop("max-turns")
        self.turns += 1
        self.out("TURN", f"{self.turns} POST {self._show(url)}")
        status, body, mimetype = self._post(url, form)
        if status == 403:
            raise PhoneError("403: the signature was refused. Is TWILIO_AUTH_TOKEN the one the "
                             "instance uses (source .run/dev.env), and PUBLIC_BASE_URL the "
                             "URL it signs against?")
        if status != 200:
            raise PhoneError(f"HTTP {status} from {self._show(url)}: Twilio would play its "
                             "application-error message and hang up")
        if mimetype not in ("text/xml", "application/xml"):
            raise PhoneError(f"{self._show(url)} answered {mimetype}, not TwiML")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise PhoneError(f"{self._show(url)} answered TwiML that does not parse: {e}") \
                from None
        if root.tag != "Response":
            raise PhoneError(f"{self._show(url)} answered <{root.tag}>, not <Response>")
        return root

    def _show(self, url: str) -> str:
        """Our own URLs as path + query, so the transcript reads the same on any port."""
        if url.startswith(self.public_url + "/"):
            return url[len(self.public_url):]
        return url

    def _form(self, status: str = "in-progress", **extra: str) -> dict[str, str]:
        """Twilio's common voice parameters, plus the verb-specific ones."""
        form = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01",
                "CallSid": self.call_sid, "CallStatus": status, "Direction": "inbound",
                "From": self.from_, "Caller": self.from_, "To": self.to, "Called": self.to}
        form.update(extra)
        return form

    # -- a call ----------------------------------------------------------------------------

    def call(self, script: Iterable[Input] = (), *, ask: Ask | None = None,
             path: str = "/voice/incoming", hang_up: bool = True, stay: float = 0.0,
             journal: str | None = None, pause: Callable[[float], None] = time.sleep
             ) -> CallResult:
        """Ring the instance and follow its TwiML until the caller is connected, queued or
        hung up; then send the `completed` status callback (unless not `hang_up`, which
        leaves the call live in the instance, e.g. waiting for an operator).

        `stay`: seconds to hold the line once in a conference or a queue before hanging up,
        printing each line the REST stand-in appends to `journal` from the call's start
        (REST: ...); `pause` is how it waits (tests pass one that runs the jobs).

        Scripted inputs are used, in order, by the <Gather>s that accept them; with none
        left, `ask` is asked (interactive use), else the gather times out (silence).
        """
        self.call_sid = "CA" + secrets.token_hex(16)
        self.turns = 0
        pending = deque(script)
        journal_start = journal_size(journal)
        started = time.monotonic()
        self.out("CALL", f"from {self.from_} to {self.to} call_sid={self.call_sid}")
        outcome = "hangup"
        try:
            url = self.public_url + path
            root = self._twiml(url, self._form("ringing"))
            while True:
                url, form = self._walk(root, url, pending, ask)
                root = self._twiml(url, form)
        except _Stop as stop:
            outcome = stop.outcome
        except PhoneError as e:
            self.out("ERROR", str(e))
            outcome = "error"
        if outcome == "max-turns":
            self.out("NOTE", f"stopped after {self.max_turns} webhooks")
        if stay > 0 and outcome in ("conference", "queue"):
            self._stay(stay, journal, journal_start, pause)
        if hang_up:
            duration = str(max(1, round(time.monotonic() - started)))
            try:
                status, _, _ = self._post(self.public_url + "/voice/status",
                                          self._form("completed", CallDuration=duration))
                self.out("END", f"hung up; status callback completed -> HTTP {status}")
            except PhoneError as e:
                self.out("ERROR", str(e))
                outcome = "error"
        else:
            self.out("END", "left the call open (no status callback)")
        return CallResult(self.call_sid, outcome, self.turns, self.out.transcript)

    def _stay(self, seconds: float, journal: str | None, start: int,
              pause: Callable[[float], None]) -> None:
        self.out("NOTE", f"staying on the line for {seconds:g} s")
        if not journal:
            self.out("NOTE", f"{JOURNAL_ENV} is not set, so what the REST stand-in does is "
                             "not shown (source .run/dev.env)")
            pause(seconds)
            return
        if not follow(journal, start, seconds, lambda line: self.out("REST", line),
                      pause=pause):
            self.out("NOTE", "the REST stand-in was asked nothing meanwhile")

    def _walk(self, root: ET.Element, url: str, pending: deque[Input], ask: Ask | None
              ) -> tuple[str, dict[str, str]]:
        """Play one TwiML document and return the next webhook (url, form); raise _Stop when
        the call leaves the caller's hands or the document ends (Twilio hangs up)."""
        for verb in root:
            tag = verb.tag
            if tag in ("Say", "Play", "Pause"):
                self._hear(verb)
            elif tag == "Gather":
                for inner in verb:
                    self._hear(inner)
                got = self._gather(verb, pending, ask)
                if got is not None:
                    action = urljoin(url, verb.get("action") or url)
                    return action, self._form(**got)
            elif tag == "Redirect":
                target = urljoin(url, (verb.text or "").strip() or url)
                self.out("NOTE", f"redirect to {self._show(target)}")
                return target, self._form()
            elif tag == "Enqueue":
                self._enqueue(verb, url, pending, ask)
            elif tag == "Dial":
                self._dial(verb)
            elif tag in ("Hangup", "Reject"):
                self.out("HANGUP", tag.lower())
                raise _Stop("hangup")
            else:
                self.out("NOTE", f"<{tag}> is not simulated; skipped")
        self.out("HANGUP", "end of TwiML")
        raise _Stop("hangup")

    def _hear(self, verb: ET.Element) -> None:
        if verb.tag == "Say":
            voice = " ".join(v for v in (verb.get("language"), verb.get("voice")) if v)
            self.out("SAY", f"[{voice}] {(verb.text or '').strip()}" if voice
                     else (verb.text or "").strip())
        elif verb.tag == "Play":
            self.out("PLAY", (verb.text or "").strip())
        elif verb.tag == "Pause":
            self.out("PAUSE", f"{verb.get('length', '1')} s")

    def _gather(self, verb: ET.Element, pending: deque[Input], ask: Ask | None
                ) -> dict[str, str] | None:
        """The caller's answer as Twilio's parameters, or None for a timeout (silence)."""
        accepts = set((verb.get("input") or "dtmf").split())
        limit = verb.get("numDigits")
        timeout = verb.get("timeout", "5")
        self.out("GATHER", f"{' '.join(sorted(accepts))}, timeout {timeout} s")
        answer: Input | None = None
        if pending:
            if _fits(pending[0], accepts):
                answer = pending.popleft()
        elif ask is not None:
            typed = ask(" / ".join(sorted(accepts)))
            answer = Input.typed(typed) if typed and typed.strip() else None
            if answer is not None and not _fits(answer, accepts):
                self.out("NOTE", f"this gather takes {', '.join(sorted(accepts))} only")
                answer = None
        if answer is None or not answer.value:
            self.out("CALLER", "(silence: the gather times out)")
            return None
        if answer.kind == "digits":
            digits = answer.value[: int(limit)] if limit and limit.isdigit() else answer.value
            self.out("CALLER", f"presses {digits}")
            return {"Digits": digits}
        self.out("CALLER", f"says 「{answer.value}」")
        return {"SpeechResult": answer.value, "Confidence": CONFIDENCE}

    def _enqueue(self, verb: ET.Element, url: str, pending: deque[Input],
                 ask: Ask | None) -> None:
        """Wait in the queue: fetch waitUrl `wait_loops` times as Twilio does while the caller
        holds (following what it says, including a key press), then stop the simulation."""
        name = (verb.text or "").strip() or "(TaskRouter workflow)"
        self.out("QUEUE", f"enqueued in '{name}'")
        wait_url = verb.get("waitUrl")
        if wait_url:
            queue_sid = "QU" + secrets.token_hex(16)
            for loop in range(self.wait_loops):
                # Twilio's own view of the queue; the service speaks its own priority order
                form = self._form(QueueSid=queue_sid, QueuePosition="1",
                                  QueueTime=str(30 * loop), AvgQueueTime="60",
                                  CurrentQueueSize="1")
                wait_doc = next_url = urljoin(url, wait_url)
                while True:
                    step = self._walk_wait(self._twiml(next_url, form), next_url, pending, ask)
                    if step is None:
                        break  # played out: Twilio fetches waitUrl again (the next loop)
                    next_url, extra = step
                    if next_url == wait_doc:
                        break  # redirected to the wait document itself: the next loop
                    form = self._form(**extra)
        self.out("QUEUE", f"waiting in queue '{name}'; the simulator stops here")
        raise _Stop("queue")

    def _walk_wait(self, root: ET.Element, url: str, pending: deque[Input],
                   ask: Ask | None) -> tuple[str, dict[str, str]] | None:
        """A waitUrl document: Say/Play/Pause/Gather/Redirect/Hangup/Leave as Twilio allows
        there; returns the next request of this wait, or None when it has played out."""
        for verb in root:
            if verb.tag in ("Say", "Play", "Pause"):
                self._hear(verb)
            elif verb.tag == "Gather":
                for inner in verb:
                    self._hear(inner)
                got = self._gather(verb, pending, ask)
                if got is not None:
                    return urljoin(url, verb.get("action") or url), got
            elif verb.tag == "Redirect":
                target = urljoin(url, (verb.text or "").strip() or url)
                self.out("NOTE", f"redirect to {self._show(target)}")
                return target, {}
            elif verb.tag in ("Hangup", "Reject"):
                self.out("HANGUP", verb.tag.lower())
                raise _Stop("hangup")
            elif verb.tag == "Leave":
                self.out("QUEUE", "left the queue")
                raise _Stop("hangup")
            else:
                self.out("NOTE", f"<{verb.tag}> is not allowed in a waitUrl; skipped")
        return None

    def _dial(self, verb: ET.Element) -> None:
        """The caller is handed to someone else: report where, and stop the simulation."""
        for noun in verb:
            name = (noun.text or "").strip()
            if noun.tag == "Conference":
                self.out("CONFERENCE", f"joined conference {name}; the simulator stops here")
                raise _Stop("conference")
            if noun.tag == "Queue":
                self.out("DIAL", f"takes the next caller from queue '{name}'")
                raise _Stop("dial")
            self.out("DIAL", f"dials {noun.tag.lower()} {name}")
            raise _Stop("dial")
        self.out("DIAL", f"dials {(verb.text or '').strip()}")
        raise _Stop("dial")

    # -- an SMS ----------------------------------------------------------------------------

    def text(self, body: str) -> list[str]:
        """Send one inbound SMS as Twilio would and return the <Message> replies."""
        sid = "SM" + secrets.token_hex(16)
        form = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "MessageSid": sid,
                "SmsSid": sid, "SmsMessageSid": sid, "SmsStatus": "received",
                "From": self.from_, "To": self.to, "Body": body, "NumMedia": "0",
                "NumSegments": "1"}
        url = self.public_url + "/sms/incoming"
        self.out("SMS", f"from {self.from_} to {self.to} message_sid={sid}: 「{body}」")
        status, answer, mimetype = self._post(url, form)
        if status == 403:
            raise PhoneError("403: the signature was refused. Is TWILIO_AUTH_TOKEN the one the "
                             "instance uses (source .run/dev.env)?")
        if status != 200 or mimetype not in ("text/xml", "application/xml"):
            raise PhoneError(f"HTTP {status} ({mimetype}) from /sms/incoming")
        root = ET.fromstring(answer)
        replies = []
        for message in root.iter("Message"):
            body_node = message.find("Body")
            node = body_node if body_node is not None else message
            replies.append((node.text or "").strip())
        for reply in replies:
            self.out("MESSAGE", reply)
        if not replies:
            self.out("NOTE", "no reply")
        return replies


def _fits(answer: Input, accepts: set[str]) -> bool:
    return (answer.kind == "digits" and "dtmf" in accepts) or \
        (answer.kind == "speech" and "speech" in accepts)
