"""Triage's retention (docs/security.md "Retention"): parked marks for pupils the roster never
named, and the deduplication log of received events."""

from __future__ import annotations

import datetime as dt

from servicekit.clock import LONDON
from servicekit.housekeeping import Purge

from triage.models import parked_events, received_events
from triage.rates import school_year_start
from triage.settings import TriageSettings


def triage_purges(settings: TriageSettings, now: dt.datetime) -> list[Purge]:
    return [
        Purge("parked_events", parked_events, parked_events.c.event_id,
              parked_events.c.parked_at < now - dt.timedelta(days=settings.parked_event_days)),
        Purge("received_events", received_events, received_events.c.event_id,
              received_events.c.received_at < received_events_cutoff(settings, now)),
    ]


def received_events_cutoff(settings: TriageSettings, now: dt.datetime) -> dt.datetime:
    """Events received before this are forgotten: older than the retention, and never from
    the current school year, whose amendment history the timeline shows (triage.timeline)."""
    year_start = school_year_start(now.astimezone(LONDON).date())
    year_started_at = dt.datetime.combine(year_start, dt.time(), LONDON).astimezone(dt.UTC)
    return min(now - dt.timedelta(days=settings.received_event_days), year_started_at)
