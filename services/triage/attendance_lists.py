"""`GET /api/v1/attendance`: each pupil's rates for the current school year, for the staff
lists (below 90%, persistent and severe absence, penalty notices to consider, `N` marks left
uncorrected). Every flag is the rules' own test on the same counters (docs/rules.md "Rates"),
so a list never disagrees with what the rules did.

A fixed number of queries for the whole set of schools, however many pupils (an LA's 300
schools of 1,500 pupils is one request): the schools, the roster joined to the counters (one
per school year in play, which is one), last year's counters when a penalty window reaches
back into it, the `N` marks still standing (a partial index), and the penalty-window marks of
only the pupils whose counters could reach the threshold."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from broker_messages.codes import UNEXPLAINED
from fastapi import APIRouter, Query
from servicekit.clock import local_date
from servicekit.keys import Principal
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import history
from triage.deps import ClockDep, EngineDep, SchoolsDep, TimelineReader
from triage.models import attendance_counters, marks, pupils, schools
from triage.policy import Policy
from triage.rates import Counts, rates_actionable, school_year_start
from triage.rules import penalty_notice_threshold, persistent_absence, severe_absence
from triage.rules.thresholds import rate_details
from triage.rules.unexplained_not_recoded import overdue
from triage.schools import SchoolContext

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])

ListName = Literal["all", "below_90", "persistent", "severe", "penalty_notice",
                   "unexplained_over_5_days"]
BELOW = 0.90
PupilKey = tuple[str, str]  # school, pupil


@dataclass(frozen=True)
class School:
    context: SchoolContext
    today: dt.date
    year_start: dt.date
    penalty_from: dt.date  # the earliest day of a penalty window that holds today


@router.get("/attendance")
async def attendance(
    engine: EngineDep, clock: ClockDep, cache: SchoolsDep, caller: TimelineReader,
    school_urn: Annotated[list[Annotated[str, Query(pattern=r"^[0-9]{6,8}$")]] | None,
                          Query(max_length=1000)] = None,
    wanted: Annotated[ListName, Query(alias="list")] = "all",
    year_group: Annotated[int, Query(ge=-2, le=14)] | None = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> dict[str, Any]:
    """Pupils on roll, lowest attendance first; `list` filters before `limit` cuts.
    `school_urn` may be repeated (a local authority's schools); none: every school the key
    serves."""
    for urn in school_urn or ():
        ensure_school(caller, urn)
    now = clock.now()
    async with engine.connect() as conn:
        urns = await _schools_of(conn, caller, school_urn)
        contexts = await cache.load(conn, urns) if urns else {}
        in_play = {urn: _school(context, now) for urn, context in contexts.items()}
        rows = await _rows(conn, in_play, year_group)
        unexplained = await _overdue_unexplained(conn, in_play, now)
        # Every list but these is decided by a pupil's counters alone: a row is built only
        # for a pupil on it, and the penalty-notice test (it reads marks) runs only for them.
        decided = wanted not in ("all", "penalty_notice")
        built = []
        for key, (names, counts) in rows.items():
            policy = in_play[key[0]].context.policy
            flags = {**_rate_flags(counts, policy),
                     "unexplained_over_5_days": unexplained.get(key, 0)}
            if decided and not _on_list(wanted, flags, counts):
                continue
            built.append((key, _row(key, names, counts, flags), counts))
        penalty = await _penalty_notices(conn, in_play,
                                         {key: rows[key] for key, _, _ in built})
    listed = []
    for key, row, counts in built:
        row["penalty_notice"] = key in penalty
        if _on_list(wanted, row, counts):
            listed.append(row)
    listed.sort(key=lambda r: (r["attendance_percent"], r["school_urn"], r["family_name"] or "",
                               r["given_name"] or "", r["pupil_id"]))
    return {"rows": listed[:limit], "truncated": len(listed) > limit}


def _rate_flags(counts: Counts, policy: Policy) -> dict[str, bool]:
    """As the rules judge them: never on fewer sessions than the policy's minimum."""
    actionable = rates_actionable(counts, policy.min_possible_sessions)
    return {"persistent": actionable and persistent_absence.threshold(policy).crossed(counts),
            "severe": actionable and severe_absence.threshold(policy).crossed(counts)}


def _row(key: PupilKey, names: dict[str, Any], counts: Counts,
         flags: dict[str, Any]) -> dict[str, Any]:
    row = {
        "school_urn": key[0], "pupil_id": key[1], **names,
        "possible": counts.possible, "attended": counts.possible - counts.absent,
        "authorised": counts.authorised, "unauthorised": counts.unauthorised,
        **rate_details(counts), **flags,
        "penalty_notice": False,  # set once the penalty-notice test has run
    }
    row.pop("possible_sessions")
    return row


def _on_list(name: ListName, row: dict[str, Any], counts: Counts) -> bool:
    if name == "below_90":
        return counts.possible > 0 and counts.attendance_rate < BELOW
    return name == "all" or bool(row[name])


def _school(context: SchoolContext, now: dt.datetime) -> School:
    today = local_date(now, context.tz)
    return School(context, today, school_year_start(today),
                  penalty_notice_threshold.window_from(today, context.calendar, context.policy))


async def _schools_of(conn: AsyncConnection, caller: Principal,
                      school_urn: list[str] | None) -> list[str]:
    """The schools asked for, or every school the key serves (that triage knows)."""
    if school_urn:
        return sorted(set(school_urn))
    if caller.schools is not None:
        return sorted(caller.schools)
    return sorted((await conn.execute(select(schools.c.urn))).scalars())


_NAMES = (pupils.c.record["given_name"].as_string().label("given_name"),
          pupils.c.record["family_name"].as_string().label("family_name"),
          pupils.c.record["year_group"].as_integer().label("year_group"))


async def _rows(conn: AsyncConnection, in_play: dict[str, School], year_group: int | None
                ) -> dict[PupilKey, tuple[dict[str, Any], Counts]]:
    """Every pupil on roll of these schools, with names and this year's counters."""
    by_year: dict[dt.date, list[str]] = defaultdict(list)
    for urn, school in in_play.items():
        by_year[school.year_start].append(urn)
    found: dict[PupilKey, tuple[dict[str, Any], Counts]] = {}
    for year_start, urns in by_year.items():
        query = select(
            pupils.c.school_urn, pupils.c.pupil_id, *_NAMES, attendance_counters.c.possible,
            attendance_counters.c.authorised, attendance_counters.c.unauthorised,
        ).select_from(pupils.outerjoin(attendance_counters, (
            attendance_counters.c.school_urn == pupils.c.school_urn)
            & (attendance_counters.c.pupil_id == pupils.c.pupil_id)
            & (attendance_counters.c.year_start == year_start))
        ).where(pupils.c.school_urn.in_(urns), pupils.c.on_roll.is_(True))
        if year_group is not None:
            query = query.where(_NAMES[2] == year_group)
        for row in await conn.execute(query):
            found[(row.school_urn, row.pupil_id)] = (
                {"given_name": row.given_name, "family_name": row.family_name,
                 "year_group": row.year_group},
                Counts(row.possible or 0, row.authorised or 0, row.unauthorised or 0))
    return found


async def _overdue_unexplained(conn: AsyncConnection, in_play: dict[str, School],
                               now: dt.datetime) -> dict[PupilKey, int]:
    """`N` sessions of this school year past `recode_within_days` school days, per pupil, as
    `unexplained_not_recoded` judges them."""
    if not in_play:
        return {}
    counted: dict[PupilKey, int] = defaultdict(int)
    # A literal, not a bound value, so both databases match the partial index on it.
    rows = await conn.execute(
        select(marks.c.school_urn, marks.c.pupil_id, marks.c.date)
        .where(marks.c.school_urn.in_(sorted(in_play)),
               marks.c.code == literal_column(f"'{UNEXPLAINED}'"),
               marks.c.date >= min(s.year_start for s in in_play.values())))
    # Whether a day's N is overdue depends on the school and the day, not the pupil: an
    # authority's year of N marks asks about a few thousand school days, not each mark.
    judged: dict[tuple[str, dt.date], bool] = {}
    for urn, pupil_id, day in rows:
        school = in_play[urn]
        if day < school.year_start:
            continue
        if (urn, day) not in judged:
            context = school.context
            judged[(urn, day)] = overdue(day, now, context.calendar, context.policy, context.tz)
        if judged[(urn, day)]:
            counted[(urn, pupil_id)] += 1
    return counted


async def _penalty_notices(conn: AsyncConnection, in_play: dict[str, School],
                           rows: dict[PupilKey, tuple[dict[str, Any], Counts]]) -> set[PupilKey]:
    """Pupils for whom `penalty_notice_threshold`'s own test finds a window reaching the
    threshold among the windows that hold today (whether or not it was alerted on). Only a
    pupil with at least that many unauthorised sessions since the earliest such window can
    reach it, so the marks of the others are never read."""
    unauthorised = {key: counts.unauthorised for key, (_, counts) in rows.items()}
    earlier = {urn for urn, s in in_play.items() if s.penalty_from < s.year_start}
    if earlier:
        for key, count in (await _last_years_unauthorised(conn, in_play, earlier)).items():
            if key in unauthorised:
                unauthorised[key] += count
    candidates = [key for key, count in unauthorised.items()
                  if count >= in_play[key[0]].context.policy.penalty_notice.sessions]
    if not candidates:
        return set()
    codes = {code for urn, _ in candidates
             for code in in_play[urn].context.policy.penalty_notice.codes}
    sessions = await history.marks_between_many(
        conn, candidates, min(in_play[urn].penalty_from for urn, _ in candidates),
        max(in_play[urn].today for urn, _ in candidates), codes=codes)
    reached = set()
    for urn, pupil_id in candidates:
        school = in_play[urn]
        policy = school.context.policy
        days = [day for day, by_session in sessions[urn][pupil_id].items()
                if day >= school.penalty_from
                for code in by_session.values() if code in policy.penalty_notice.codes]
        if penalty_notice_threshold.first_window(days, None, school.context.calendar, policy):
            reached.add((urn, pupil_id))
    return reached


async def _last_years_unauthorised(conn: AsyncConnection, in_play: dict[str, School],
                                   urns: set[str]) -> dict[PupilKey, int]:
    """Last school year's unauthorised sessions, for schools whose penalty window reaches
    back into it (the autumn term's first weeks)."""
    last_years = {urn: school_year_start(in_play[urn].year_start - dt.timedelta(days=1))
                  for urn in urns}
    rows = await conn.execute(
        select(attendance_counters.c.school_urn, attendance_counters.c.pupil_id,
               attendance_counters.c.year_start, attendance_counters.c.unauthorised)
        .where(attendance_counters.c.school_urn.in_(sorted(urns)),
               attendance_counters.c.year_start.in_(sorted(set(last_years.values()))),
               attendance_counters.c.unauthorised > 0))
    return {(urn, pupil_id): count for urn, pupil_id, year_start, count in rows
            if year_start == last_years[urn]}
