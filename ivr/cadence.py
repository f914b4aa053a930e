"""When the next progress update falls due: the severity cadence, bent around quiet hours."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from ivr.flows import Flows


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_quiet(flows: Flows, moment: datetime, tz: ZoneInfo) -> bool:
    """True inside quiet hours (local time); the window may run past midnight."""
    start, end = (_clock(flows.sms["quiet_hours"][k]) for k in ("start", "end"))
    now = moment.astimezone(tz).time()
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def quiet_end(flows: Flows, moment: datetime, tz: ZoneInfo) -> datetime:
    """The first moment after `moment` when quiet hours are over, in UTC."""
    end = _clock(flows.sms["quiet_hours"]["end"])
    local = moment.astimezone(tz)
    candidate = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(ZoneInfo("UTC"))


def held(flows: Flows, severity: str, moment: datetime, tz: ZoneInfo) -> datetime:
    """When a routine update meant for `moment` may go out: at once for critical incidents
    or outside quiet hours, else when quiet hours end."""
    if severity == "critical" or not is_quiet(flows, moment, tz):
        return moment
    return quiet_end(flows, moment, tz)


def next_due(flows: Flows, severity: str, after: datetime, tz: ZoneInfo) -> datetime:
    """`after` plus the severity's cadence, held to the morning if that lands in quiet hours,
    so next_update_at always says when the next message really goes out."""
    return held(flows, severity, after + flows.cadence(severity), tz)


def rescheduled(flows: Flows, severity: str, last: datetime, now: datetime, tz: ZoneInfo
                ) -> datetime:
    """When the next update falls due after the severity changed: the new cadence counted
    from the last update (`last`), at once if that moment has already passed, and held to
    the morning as next_due holds it."""
    return held(flows, severity, max(last + flows.cadence(severity), now), tz)
