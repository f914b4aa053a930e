"""Every TwiML document a test receives is checked against Twilio's own XML Schema.

The schema (voice TwiML, from Twilio's TwilioDevEd/twiml-generator) lives outside the
repository, in ../shared/twiml-xsd beside the checkout (see its README). Without it the
suite fails: a test run that silently stopped validating would still look green.

What the schema itself lacks, and only that, is let through here, each case narrowly:
- Messaging TwiML: the schema describes voice only, so a `<Response>` made only of
  `<Message>` elements (the SMS webhooks' answers) is checked against the Messaging
  rules below instead;
- Google voices: the schema's `voice` pattern knows `Polly.Name` but not Twilio's
  `Google.<lang>-<REGION>-<model>` voices (flows/call.yaml's fallback voices). Only that
  one pattern error, on a `voice` attribute holding such a name, is forgiven.
Every other error fails the test.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
XSD_DIR = ROOT.parent / "shared" / "twiml-xsd"
XSD = XSD_DIR / "twiml_v20100401_twilioRealtimeCallSchema.xsd"

GOOGLE_VOICE = re.compile(r"Google\.[a-z]{2,3}-[A-Z]{2}-[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
# Messaging TwiML's <Message>: its attributes, and text only (we send no <Body>/<Media>).
MESSAGE_ATTRIBUTES = frozenset({"to", "from", "action", "method", "statusCallback"})

checked: list[int] = [0]  # documents validated this session (distinct ones)


class InvalidTwiML(AssertionError):
    """A document Twilio's schema refuses, with every reason."""


@functools.cache
def schema() -> Any:
    """Twilio's voice TwiML schema, loaded once. Raises when ../shared/twiml-xsd is missing."""
    import xmlschema

    if not XSD.is_file():
        raise FileNotFoundError(
            f"Twilio's TwiML schema is missing: expected {XSD} (../shared/twiml-xsd from the "
            "repository root, see that folder's README). Every TwiML answer is validated "
            "against it; the tests do not run without it.")
    return xmlschema.XMLSchema(str(XSD))


def _forgiven(error: Any) -> bool:
    """True only for the schema's own gap about Google voices (see the module docstring)."""
    elem = getattr(error, "elem", None)
    return (type(error.validator).__name__ == "XsdPatternFacets"
            and elem is not None and isinstance(error.obj, str)
            and elem.get("voice") == error.obj
            and GOOGLE_VOICE.fullmatch(error.obj) is not None)


def _messaging_errors(root: ET.Element) -> list[str]:
    errors = []
    for message in root:
        if set(message.attrib) - MESSAGE_ATTRIBUTES:
            errors.append(f"<Message> attributes {sorted(message.attrib)}")
        if len(message):
            errors.append(f"<Message> holds elements {[child.tag for child in message]}")
        if not (message.text or "").strip():
            errors.append("an empty <Message>")
    return errors


@functools.cache
def validate(body: bytes) -> None:
    """Raise InvalidTwiML unless `body` is TwiML Twilio accepts (cached per document)."""
    root = ET.fromstring(body)  # not well-formed: ParseError, a failure too
    if root.tag == "Response" and len(root) and all(child.tag == "Message" for child in root):
        errors = _messaging_errors(root)
    else:
        errors = [f"{error.path}: {error.reason}" for error in schema().iter_errors(body.decode())
                  if not _forgiven(error)]
    if errors:
        raise InvalidTwiML("TwiML refused by Twilio's schema:\n  " + "\n  ".join(errors)
                           + "\n" + body.decode(errors="replace"))
    checked[0] += 1
