"""docs/rules.md "Quiet hours": when a family SMS or call may go out. Pure: no clock, no I/O.

A message due inside quiet hours or on a day that is not a school day is held until the next
opening: the next school day's end of quiet hours."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from broker_messages.contact import DeliveryWindow

# Triage sends the school days ahead; past the last one it knows (or with none), weekdays stand
# in, so a message is held to a plausible morning rather than sent at night or dropped.
_SEARCH_DAYS = 60


def parse_quiet_hours(text: str) -> tuple[dt.time, dt.time]:
    start, end = (dt.time.fromisoformat(part.strip()) for part in text.split("-", 1))
    return start, end


def _open_intervals(quiet_start: dt.time, quiet_end: dt.time) -> list[tuple[dt.time, dt.time | None]]:
    """The parts of a day outside quiet hours; None as an end means midnight."""
    if quiet_start == quiet_end:
        return [(dt.time(0), None)]
    if quiet_start > quiet_end:  # wraps midnight, e.g. 20:00-08:00
        return [(quiet_end, quiet_start)]
    return [(dt.time(0), quiet_start), (quiet_end, None)]


def _is_school_day(day: dt.date, window: DeliveryWindow) -> bool:
    if window.school_days and day <= max(window.school_days):
        return day in window.school_days
    return day.weekday() < 5


def next_send_time(now: dt.datetime, window: DeliveryWindow) -> dt.datetime:
    """`now` if a family SMS/call may go out now, else the next opening (aware UTC)."""
    tz = ZoneInfo(window.timezone)
    quiet_start, quiet_end = parse_quiet_hours(window.quiet_hours)
    local_now = now.astimezone(tz)
    day = local_now.date()
    for offset in range(_SEARCH_DAYS):
        candidate = day + dt.timedelta(days=offset)
        if not _is_school_day(candidate, window):
            continue
        for start, end in _open_intervals(quiet_start, quiet_end):
            opens = dt.datetime.combine(candidate, start, tzinfo=tz)
            closes = (dt.datetime.combine(candidate, end, tzinfo=tz) if end is not None
                      else dt.datetime.combine(candidate + dt.timedelta(days=1), dt.time(0),
                                               tzinfo=tz))
            if local_now < closes:
                return max(local_now, opens).astimezone(dt.UTC)
    raise ValueError("no school day in the next 60 days: cannot schedule a family message")
