"""Builders for the pure rule tests (`tests/test_rules_*.py` that need no broker or database):
a school with the Millbrook calendar (autumn term 2026, Friday 20 November closed), a pupil,
and the facts each kind of rule is given."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from triage.calendar import SchoolCalendar, Term
from triage.policy import Policy
from triage.rates import Counts
from triage.rules.episodes import Episode
from triage.rules.rule import DayFacts, DueAction, EpisodeFacts, RateFacts
from triage.school_document import Contact, Pupil
from triage.schools import SchoolContext

from tests.factories import LONDON, URN

CALENDAR = SchoolCalendar((Term(dt.date(2026, 9, 3), dt.date(2026, 12, 18)),),
                          frozenset({dt.date(2026, 11, 20)}))
MONDAY = dt.date(2026, 11, 23)
TUESDAY, WEDNESDAY, THURSDAY, FRIDAY = (MONDAY + dt.timedelta(days=n) for n in range(1, 5))
SATURDAY = MONDAY + dt.timedelta(days=5)
NEXT_MONDAY = MONDAY + dt.timedelta(days=7)
WORKER = {"name": "A Worker", "email": "a.worker@la.example"}
STAFF = [{"role": "attendance_officer", "name": "R Baish", "email": "attendance@millbrook.example"},
         {"role": "dsl", "name": "Safeguarding Lead", "email": "dsl@millbrook.example"},
         {"role": "headteacher", "name": "Head", "email": "head@millbrook.example"}]
AUTHORITY = {"name": "Oxfordshire", "attendance_team_email": "attendance@la.example",
             "send_team_email": "send@la.example",
             "virtual_school_email": "virtualschool@la.example"}


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A school-local wall-clock time, as the aware UTC timestamp the rules are given."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LONDON).astimezone(dt.UTC)


def parent(priority: int = 1, **fields: Any) -> Contact:
    values: dict[str, Any] = {"name": "Jane Smith", "priority": priority,
                              "phone": f"+44770090000{priority}",
                              "email": f"parent{priority}@example.com"}
    return Contact(**{**values, **fields})


def pupil(contacts: Sequence[Contact] | None = None, **fields: Any) -> Pupil:
    return Pupil(id="P1", given_name="Sally", family_name="Smith",
                 contacts=list(contacts) if contacts is not None else [parent()], **fields)


def school(policy: Policy | None = None, *, staff: list[dict[str, str]] | None = None,
           authority: dict[str, str] | None = AUTHORITY) -> SchoolContext:
    document: dict[str, Any] = {"staff": STAFF if staff is None else staff,
                                "local_authority": authority}
    return SchoolContext(urn=URN, name="Millbrook Primary School", phone=None, tz=LONDON,
                         calendar=CALENDAR, policy=policy or Policy(), document=document)


def day_facts(day: dt.date, codes: Mapping[str, str], *, now: dt.datetime | None = None,
              previous_day_absent: bool = False, who: Pupil | None = None,
              policy: Policy | None = None) -> DayFacts:
    return DayFacts(school_urn=URN, pupil=who or pupil(), day=day, codes=codes,
                    previous_day_absent=previous_day_absent, calendar=CALENDAR,
                    policy=policy or Policy(), now=now or at(day, 8, 52), tz=LONDON)


def episode_facts(marks: Mapping[dt.date, Mapping[str, str]], *, now: dt.datetime,
                  policy: Policy | None = None) -> EpisodeFacts:
    days = tuple(sorted(marks))
    return EpisodeFacts(school_urn=URN, pupil=pupil(), episode=Episode(days), marks=marks,
                        calendar=CALENDAR, policy=policy or Policy(), now=now, tz=LONDON)


def rate_facts(counts: Counts, *, who: Pupil | None = None, policy: Policy | None = None,
               sessions: Sequence[dt.date] = (), now: dt.datetime | None = None) -> RateFacts:
    return RateFacts(school_urn=URN, pupil=who or pupil(), counts=counts,
                     year_start=dt.date(2026, 8, 1), unauthorised_sessions=sessions,
                     calendar=CALENDAR, policy=policy or Policy(),
                     now=now or at(MONDAY, 10), tz=LONDON)


def due(rule: str, day: dt.date, episode_start: dt.date | None = None) -> DueAction:
    return DueAction(rule=rule, dedup_key=f"{rule}:{URN}:P1:{day.isoformat()}", school_urn=URN,
                     pupil_id="P1", date=day, episode_start=episode_start)


def every_day(days: Sequence[dt.date], code: str) -> dict[dt.date, dict[str, str]]:
    return {day: {"AM": code, "PM": code} for day in days}
