"""SMS tests: segments, the opt-out link and page, inbound keywords, status callbacks.

Shared helpers live here because every file of the package needs them.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from typing import Any

from tests.conftest import parse_twiml

_sids = itertools.count(1)


def new_message_sid() -> str:
    return f"SM{next(_sids):032x}"


def snapshot(svc: Any) -> dict[bytes, bytes]:
    """Every key and its serialised value, to prove a request wrote nothing."""
    raw = svc.rq_redis
    return {key: raw.dump(key) for key in raw.scan_iter(count=1000)}


def messages(response: Any) -> list[str]:
    """The text of each <Message> of a MessagingResponse, after checking the envelope."""
    root: ET.Element = parse_twiml(response)
    assert all(child.tag == "Message" for child in root), ET.tostring(root)
    return [child.text or "" for child in root]
