"""Running the rules over one batch of stored events, inside the batch's transaction.

Each step loads what the rules need for the whole batch (a handful of queries per school),
calls the pure rules in `triage.rules`, and stores their decisions and per-pupil state."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from broker_messages.events import PupilRemoved, RegisterMark
from servicekit.clock import local_date
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import counters, history
from triage import decisions as decision_store
from triage.rates import school_year_start
from triage.rules import episodes, first_day, penalty, statutory, thresholds
from triage.rules.decisions import PENALTY_NOTICE_THRESHOLD
from triage.schools import SchoolContext


class Evaluator:
    def __init__(self, conn: AsyncConnection, contexts: dict[str, SchoolContext],
                 now: dt.datetime) -> None:
        self._conn = conn
        self._contexts = contexts
        self._now = now
        self._placed: list[decision_store.Placed] = []

    async def run(self, register_marks: list[RegisterMark], removals: list[PupilRemoved]) -> None:
        for removal in removals:
            decision = statutory.register_removal(
                school_urn=removal.school_urn, pupil_id=removal.pupil_id,
                removed_on=removal.date, ground=removal.ground, now=self._now)
            self._placed.append((decision, removal.school_urn, removal.pupil_id, removal.date))
        by_school: dict[str, dict[str, set[dt.date]]] = defaultdict(lambda: defaultdict(set))
        for mark in register_marks:
            by_school[mark.school_urn][mark.pupil_id].add(mark.date)
        for urn, pupil_days in by_school.items():
            await self._school(self._contexts[urn], pupil_days)
        await decision_store.apply_all(self._conn, self._placed, self._now)

    def _place(self, decision: object, urn: str, pupil_id: str, day: dt.date) -> None:
        if decision is not None:
            self._placed.append((decision, urn, pupil_id, day))  # type: ignore[arg-type]

    async def _school(self, context: SchoolContext, pupil_days: dict[str, set[dt.date]]) -> None:
        conn, calendar, policy, tz = self._conn, context.calendar, context.policy, context.tz
        today = local_date(self._now, tz)
        records = await history.roster_records(conn, context.urn, pupil_days)
        on_roll = {p: d for p, d in pupil_days.items() if p in records and records[p][1]}
        if not on_roll:
            return
        lookback = max(policy.day3_home_visit.day, policy.continuous_absence_days) + 2
        since = calendar.school_days_back(min(min(d) for d in on_roll.values()), lookback)
        marks = await history.marks_between(conn, context.urn, on_roll, since, today)
        fresh: set[str] = set()
        for pupil_id, days in on_roll.items():
            pupil_marks = marks[pupil_id]
            starts = [ep for d in days if (ep := self._episode_around(d, pupil_marks, context,
                                                                      since)) is not None]
            if any(ep.truncated for ep in starts):
                # A long episode: read the pupil's whole school year once (rare).
                since_year = school_year_start(min(days))
                marks.update(await history.marks_between(conn, context.urn, [pupil_id],
                                                         since_year, today))
                pupil_marks = marks[pupil_id]
                starts = [ep for d in days if (ep := self._episode_around(
                    d, pupil_marks, context, since_year)) is not None]
            record = records[pupil_id][0]
            for day in sorted(days):
                codes = pupil_marks.get(day, {})
                if not first_day.is_stale(day, self._now, calendar, policy, tz):
                    fresh.add(pupil_id)
                previous = episodes.episode_ending_before(day, pupil_marks, calendar, since)
                self._place(first_day.first_day_contact(
                    school_urn=context.urn, pupil_id=pupil_id, day=day, codes=codes,
                    previous_school_day_codes=(pupil_marks[previous.days[-1]]
                                               if previous else {}),
                    calendar=calendar, policy=policy, now=self._now, tz=tz,
                ), context.urn, pupil_id, day)
                for decision in statutory.unexplained_absence_alerts(
                    school_urn=context.urn, pupil_id=pupil_id, record=record, day=day,
                    codes=codes, calendar=calendar, policy=policy, now=self._now, tz=tz,
                ):
                    self._place(decision, context.urn, pupil_id, day)
            for episode in {ep.start: ep for ep in starts}.values():
                for rule in (episodes.day3_home_visit, episodes.continuous_absence):
                    decision = rule(school_urn=context.urn, pupil_id=pupil_id, episode=episode,
                                    marks=pupil_marks, calendar=calendar, policy=policy,
                                    now=self._now, tz=tz)
                    self._place(decision, context.urn, pupil_id,
                                episode.nth_day(policy.day3_home_visit.day) or episode.days[-1])
        # rules.md §3 "Stale marks": rates move, but only a current mark can contact anybody.
        if fresh:
            await self._rates(context, {p: on_roll[p] for p in fresh}, records, today)

    def _episode_around(self, day: dt.date, pupil_marks: history.PupilMarks | dict,  # type: ignore[type-arg]
                        context: SchoolContext, since: dt.date) -> episodes.Episode | None:
        calendar = context.calendar
        return (episodes.episode_containing(day, pupil_marks, calendar, since)
                or episodes.episode_ending_before(day, pupil_marks, calendar, since))

    async def _rates(self, context: SchoolContext, pupil_days: dict[str, set[dt.date]],
                     records: dict[str, tuple[dict, bool]], today: dt.date) -> None:  # type: ignore[type-arg]
        conn, policy = self._conn, context.policy
        year = school_year_start(today)
        counts = await counters.load(conn, [(context.urn, p, year) for p in pupil_days])
        states = await history.load_states(conn, context.urn, pupil_days)
        changed: dict[history.StateKey, tuple[bool, int, dt.date | None]] = {}
        scope = str(year.year)
        for pupil_id in sorted(pupil_days):
            pupil_counts = counts[(context.urn, pupil_id, year)]
            for threshold in thresholds.thresholds(policy):
                state_key = (pupil_id, threshold.rule, scope)
                armed, crossings, _ = states.get(state_key, (True, 0, None))
                before = thresholds.CrossingState(armed, crossings)
                after, decision = thresholds.crossing(
                    threshold, school_urn=context.urn, pupil_id=pupil_id, counts=pupil_counts,
                    year_start=year, state=before, policy=policy, now=self._now)
                if after != before:
                    changed[state_key] = (after.armed, after.crossings, None)
                self._place(decision, context.urn, pupil_id, today)
            self._place(statutory.ehcp_absence(
                school_urn=context.urn, pupil_id=pupil_id, record=records[pupil_id][0],
                counts=pupil_counts, year_start=year, policy=policy, now=self._now,
            ), context.urn, pupil_id, today)
        await self._penalty(context, pupil_days, states, changed, today)
        await history.save_states(conn, context.urn, changed, self._now)

    async def _penalty(self, context: SchoolContext, pupil_days: dict[str, set[dt.date]],
                       states: dict[history.StateKey, tuple[bool, int, dt.date | None]],
                       changed: dict[history.StateKey, tuple[bool, int, dt.date | None]],
                       today: dt.date) -> None:
        calendar, policy = context.calendar, context.policy
        codes = policy.penalty_notice.codes
        since = penalty.window_from(min(min(d) for d in pupil_days.values()), calendar, policy)
        sessions = await history.marks_between(self._conn, context.urn, pupil_days, since,
                                               today, codes=codes)
        for pupil_id in sorted(pupil_days):
            if not sessions.get(pupil_id):
                continue
            state_key = (pupil_id, PENALTY_NOTICE_THRESHOLD, "")
            armed, crossings, covered = states.get(state_key, (True, 0, None))
            dates = [day for day, by_session in sessions[pupil_id].items()
                     for _ in by_session.values()]
            decision, new_covered = penalty.penalty_notice(
                school_urn=context.urn, pupil_id=pupil_id, sessions=dates,
                covered_until=covered, calendar=calendar, policy=policy, now=self._now,
                tz=context.tz)
            if decision is not None:
                changed[state_key] = (armed, crossings + 1, new_covered)
                self._place(decision, context.urn, pupil_id, today)

