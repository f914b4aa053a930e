"""The live view (/console/live): the page, and the fragment its script fetches every few
seconds (/console/live/panel). Every open console asks, so one snapshot is kept per process
for SNAPSHOT_SECONDS: fifty consoles cost Redis what one does."""

from __future__ import annotations

import threading
import time

from flask import current_app, render_template

from ivr import current_services, floor
from ivr.console import bp

SNAPSHOT_SECONDS = 1.0
REFRESH_SECONDS = 3


class _Kept:
    """One process's latest snapshot and when it was taken (monotonic)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken = -1e9
        self.value: floor.Floor | None = None


def current_floor() -> floor.Floor:
    kept: _Kept = current_app.extensions.setdefault("ivr.console.floor", _Kept())
    with kept.lock:
        if kept.value is None or time.monotonic() - kept.taken >= SNAPSHOT_SECONDS:
            kept.value = floor.snapshot(current_services())
            kept.taken = time.monotonic()
        return kept.value


@bp.get("/live")
def live() -> str:
    return render_template("live.html", floor=current_floor(), refresh=REFRESH_SECONDS,
                           tz=current_services().tz)


@bp.get("/live/panel")
def live_panel() -> str:
    """The live part of the page alone, for the refresh script."""
    return render_template("_live_panel.html", floor=current_floor(), tz=current_services().tz)
