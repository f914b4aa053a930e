"""What a caller hears for an incident, sentence by sentence, and what its SMS costs.

The console's announcement editor shows this before anything is saved, so it renders the
same prompts (welcome, announcement) with the same values as the caller's path, and prices
the SMS with the same preview the API answers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr import incident, keys, progress
from ivr.lang import LANGS
from ivr.services import Services


@dataclass(frozen=True)
class Heard:
    """One language's greeting for a caller this incident applies to."""

    lang: str
    sentences: list[str]
    voice: str
    tts_language: str
    recording: str | None


def heard(svc: Services, doc: dict[str, Any], lang: str) -> Heard:
    """The welcome, then the SV's recording (played) or text (spoken), ETA and next update:
    the sentences /voice/incoming says, in the caller's language with the same fallback."""
    recording, text = incident.announcement_for(doc, lang)
    spoken = svc.prompts.render(  # a line a sentence here; the caller hears them joined
        "announcement", lang, keep_lines=True, text="" if recording else text or "",
        eta=svc.local(doc.get("eta")), next_update=svc.local(doc.get("next_update_at")))
    sentences = [svc.prompts.render("welcome", lang)]
    sentences += [line.strip() for line in spoken.splitlines() if line.strip()]
    voice = svc.flows.voice(lang)
    return Heard(lang, [s for s in sentences if s], voice.voice, voice.tts_language, recording)


def heard_all(svc: Services, doc: dict[str, Any]) -> list[Heard]:
    return [heard(svc, doc, lang) for lang in LANGS]


@dataclass(frozen=True)
class SmsPreview:
    kind: str
    lang: str
    text: str
    encoding: str
    segments: int
    recipients: int
    exact: bool

    @property
    def units(self) -> int:
        """Segments × recipients: what the fan-out costs against IVR_SMS_MPS."""
        return self.segments * self.recipients


def recipients(svc: Services, doc: dict[str, Any]) -> tuple[int, bool]:
    """(count, exact): the recipients of the incident's latest fan-out when there is one
    (exact), else the sum of its audience sets (an upper bound, overlaps counted twice);
    one SCARD per set, never the members, so a preview stays cheap at any size."""
    incident_id = str(doc.get("id") or "")
    if incident.ID_PATTERN.match(incident_id):
        last = int(svc.redis.scard(keys.sms_audience(incident_id, int(doc.get("update_seq", 0)))))
        if last:
            return last, True
    pipe = svc.redis.pipeline(transaction=False)
    for key in progress.audience_keys({**doc, "id": incident_id or "draft"}):
        pipe.scard(key)
    total = sum(int(n) for n in pipe.execute()) + len(incident.scope_numbers(doc))
    return total, False


def sms_previews(svc: Services, doc: dict[str, Any], *, message: dict[str, str] | None = None
                 ) -> list[SmsPreview]:
    """The first report, an update (with `message`, else the announcement) and the closing
    message, per language, with encoding, segments and recipients."""
    count, exact = recipients(svc, doc)
    text = message or doc.get("announcement") or {}
    entries = [("declared", {"kind": "declared", "message": doc.get("announcement") or {}}),
               ("update", {"kind": "update", "message": text}),
               ("resolved", {"kind": "resolved", "message": text})]
    out = []
    for kind, entry in entries:
        for lang, item in progress.preview(svc, doc, entry).items():
            out.append(SmsPreview(kind, lang, item.text, item.encoding, item.segments, count,
                                  exact))
    return out
