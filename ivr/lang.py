"""The languages the service speaks and writes, Japanese first (PRODUCT.md): prompts, voices,
announcements, SMS, customers' and supervisors' language fields all take one of these."""

from __future__ import annotations

LANGS = ("ja", "en")
