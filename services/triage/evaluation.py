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

_NEVER_CROSSED = thresholds.CrossingState()


class Evaluator:
    def __init__(self, conn: AsyncConnection, contexts: dict[str, SchoolContext],
                 records: dict[history.PupilKey, tuple[dict, bool]],  # type: ignore[type-arg]
                 now: dt.datetime) -> None:
        """`records`: the batch's pupils' roster records and whether each is on roll."""
        self._conn = conn
        self._contexts = contexts
        self._records = records
        self._now = now
        self._placed: list[decision_store.Placed] = []

    async def run(self, register_marks: list[RegisterMark], removals: list[PupilRemoved]) -> int:
        """Run the rules and store their decisions; returns how many cancellations of requests
        already handed to the notifier were queued (the relay should be woken)."""
        for removal in removals:
            decision = statutory.register_removal(
                school_urn=removal.school_urn, pupil_id=removal.pupil_id,
                removed_on=removal.date, ground=removal.ground, now=self._now)
            self._placed.append((decision, removal.school_urn, removal.pupil_id, removal.date))
        by_school: dict[str, dict[str, set[dt.date]]] = defaultdict(lambda: defaultdict(set))
        for mark in register_marks:
            by_school[mark.school_urn][mark.pupil_id].add(mark.date)
        if by_school:
            await self._evaluate(by_school)
        return await decision_store.apply_all(self._conn, self._placed, self._now)

    def _place(self, decision: object, urn: str, pupil_id: str, day: dt.date) -> None:
        if decision is not None:
            self._placed.append((decision, urn, pupil_id, day))  # type: ignore[arg-type]

    async def _evaluate(self, by_school: dict[str, dict[str, set[dt.date]]]) -> None:
        """Load what every school of the batch needs in a few queries for the whole batch (a
        busy morning's batch spans dozens of schools), then run the rules school by school."""
        records = self._records
        plans: dict[str, tuple[SchoolContext, dict[str, set[dt.date]], dt.date, dt.date]] = {}
        for urn, pupil_days in by_school.items():
            context = self._contexts[urn]
            on_roll = {p: d for p, d in pupil_days.items() if records.get((urn, p), ({}, False))[1]}
            if not on_roll:
                continue
            policy = context.policy
            lookback = max(policy.day3_home_visit.day, policy.continuous_absence_days) + 2
            since = context.calendar.school_days_back(min(min(d) for d in on_roll.values()),
                                                      lookback)
            plans[urn] = (context, on_roll, since, local_date(self._now, context.tz))
        if not plans:
            return
        marks = await history.marks_between_many(
            self._conn, {(urn, p) for urn, plan in plans.items() for p in plan[1]},
            min(plan[2] for plan in plans.values()), max(plan[3] for plan in plans.values()))
        fresh: dict[str, dict[str, set[dt.date]]] = {}
        for urn, (context, on_roll, since, today) in plans.items():
            school_records = {p: records[(urn, p)] for p in on_roll}
            current = await self._school(context, on_roll, school_records,
                                         _on_or_after(marks.get(urn, {}), since), since, today)
            if current:
                fresh[urn] = {p: on_roll[p] for p in current}
        # docs/rules.md "Stale marks": rates move, but only a current mark can contact anybody.
        if fresh:
            await self._rates(fresh, records)

    async def _school(self, context: SchoolContext, on_roll: dict[str, set[dt.date]],
                      records: dict[str, tuple[dict, bool]],  # type: ignore[type-arg]
                      marks: history.PupilMarks, since: dt.date, today: dt.date) -> set[str]:
        conn, calendar, policy, tz = self._conn, context.calendar, context.policy, context.tz
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
                    previous_day_absent=previous is not None,
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
        return fresh

    def _episode_around(self, day: dt.date, pupil_marks: history.PupilMarks | dict,  # type: ignore[type-arg]
                        context: SchoolContext, since: dt.date) -> episodes.Episode | None:
        calendar = context.calendar
        return (episodes.episode_containing(day, pupil_marks, calendar, since)
                or episodes.episode_ending_before(day, pupil_marks, calendar, since))

    async def _rates(self, fresh: dict[str, dict[str, set[dt.date]]],
                     records: dict[history.PupilKey, tuple[dict, bool]]) -> None:  # type: ignore[type-arg]
        conn = self._conn
        keys = {(urn, p) for urn, pupil_days in fresh.items() for p in pupil_days}
        todays = {urn: local_date(self._now, self._contexts[urn].tz) for urn in fresh}
        years = {urn: school_year_start(today) for urn, today in todays.items()}
        counts = await counters.load(conn, [(urn, p, years[urn]) for urn, p in keys])
        states = await history.load_states_many(conn, keys)
        windows = {urn: penalty.window_from(min(min(d) for d in pupil_days.values()),
                                            self._contexts[urn].calendar,
                                            self._contexts[urn].policy)
                   for urn, pupil_days in fresh.items()}
        codes = {c for urn in fresh for c in self._contexts[urn].policy.penalty_notice.codes}
        sessions = await history.marks_between_many(conn, keys, min(windows.values()),
                                                    max(todays.values()), codes=codes)
        changed: dict[str, dict[history.StateKey, tuple[bool, int, dt.date | None]]] = {}
        for urn, pupil_days in fresh.items():
            context, today, year = self._contexts[urn], todays[urn], years[urn]
            school_states = states.get(urn, {})
            school_changed: dict[history.StateKey, tuple[bool, int, dt.date | None]] = {}
            scope = str(year.year)
            school_thresholds = thresholds.thresholds(context.policy)
            for pupil_id in sorted(pupil_days):
                pupil_counts = counts[(urn, pupil_id, year)]
                for threshold in school_thresholds:
                    state_key = (pupil_id, threshold.rule, scope)
                    stored = school_states.get(state_key)
                    before = (_NEVER_CROSSED if stored is None
                              else thresholds.CrossingState(stored[0], stored[1]))
                    after, decision = thresholds.crossing(
                        threshold, school_urn=urn, pupil_id=pupil_id, counts=pupil_counts,
                        year_start=year, state=before, policy=context.policy, now=self._now)
                    if after != before:
                        school_changed[state_key] = (after.armed, after.crossings, None)
                    self._place(decision, urn, pupil_id, today)
                self._place(statutory.ehcp_absence(
                    school_urn=urn, pupil_id=pupil_id, record=records[(urn, pupil_id)][0],
                    counts=pupil_counts, year_start=year, policy=context.policy, now=self._now,
                ), urn, pupil_id, today)
            school_sessions = _on_or_after(sessions.get(urn, {}), windows[urn],
                                           set(context.policy.penalty_notice.codes))
            self._penalty(context, pupil_days, school_sessions, school_states, school_changed,
                          today)
            changed[urn] = school_changed
        await history.save_states_many(conn, changed, self._now)

    def _penalty(self, context: SchoolContext, pupil_days: dict[str, set[dt.date]],
                 sessions: history.PupilMarks,
                 states: dict[history.StateKey, tuple[bool, int, dt.date | None]],
                 changed: dict[history.StateKey, tuple[bool, int, dt.date | None]],
                 today: dt.date) -> None:
        calendar, policy = context.calendar, context.policy
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


def _on_or_after(found: history.PupilMarks, since: dt.date,
                 codes: set[str] | None = None) -> history.PupilMarks:
    """One school's share of a batch-wide read: the marks it would have read itself."""
    kept: history.PupilMarks = defaultdict(lambda: defaultdict(dict))
    for pupil_id, days in found.items():
        for day, sessions in days.items():
            if day < since:
                continue
            chosen = {s: c for s, c in sessions.items() if codes is None or c in codes}
            if chosen:
                kept[pupil_id][day] = chosen
    return kept
