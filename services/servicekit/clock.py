"""Time is a parameter: rules and schedulers ask a clock, never `datetime.now()`."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """An aware UTC timestamp."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FrozenClock:
    """A clock that moves only when told to (tests, demos, replays)."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = start.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = when.astimezone(dt.UTC)

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


class OffsetClock:
    """Real time shifted by a fixed offset: for rehearsing a school morning at any hour
    (demos, drills, crash tests of whole processes). Every process given the same offset
    shares one timeline, across restarts. Never configured in production."""

    def __init__(self, offset: dt.timedelta) -> None:
        self._offset = offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self._offset


def clock_from_setting(offset_seconds: float | None) -> Clock:
    return OffsetClock(dt.timedelta(seconds=offset_seconds)) if offset_seconds else SystemClock()


def local_date(when: dt.datetime, tz: ZoneInfo = LONDON) -> dt.date:
    return when.astimezone(tz).date()


def at_local_time(day: dt.date, time: dt.time, tz: ZoneInfo = LONDON) -> dt.datetime:
    """The UTC instant of a school-local wall-clock time on `day`."""
    return dt.datetime.combine(day, time, tzinfo=tz).astimezone(dt.UTC)
