"""SMS tests: segments, the opt-out link and page, inbound keywords, status callbacks."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from tests.conftest import parse_twiml


def messages(response: Any) -> list[str]:
    """The text of each <Message> of a MessagingResponse, after checking the envelope."""
    root: ET.Element = parse_twiml(response)
    assert all(child.tag == "Message" for child in root), ET.tostring(root)
    return [child.text or "" for child in root]
