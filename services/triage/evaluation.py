"""Running the rules over one batch of stored events, inside the batch's transaction.

Each step loads what the rules need for the whole batch (a handful of queries per school),
calls every rule of `triage.rules.RULES` that looks at that moment (a marked day, an episode,
the counters, a removal), and stores their decisions (`triage.decisions`) and per-pupil state
(`triage.history`)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from broker_messages.events import PupilRemoved, RegisterMark
from servicekit.clock import local_date
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import counters, history
from triage import decisions as decision_store
from triage.calendar import SchoolCalendar
from triage.rates import school_year_start
from triage.rules import RULES, Decision, episodes, penalty_notice_threshold
from triage.rules.marks import is_stale
from triage.rules.rule import DayFacts, EpisodeFacts, RateFacts, RemovalFacts, RuleState
from triage.schools import SchoolContext

_DAY_RULES = [rule.on_day for rule in RULES if rule.on_day is not None]
_EPISODE_RULES = [rule.on_episode for rule in RULES if rule.on_episode is not None]
_RATE_RULES = [rule for rule in RULES if rule.on_rates is not None]
_REMOVAL_RULES = [rule.on_removal for rule in RULES if rule.on_removal is not None]


class Evaluator:
    def __init__(self, conn: AsyncConnection, contexts: dict[str, SchoolContext],
                 records: dict[history.PupilKey, tuple[dict[str, Any], bool]],
                 now: dt.datetime) -> None:
        """`records`: the batch's pupils' roster records and whether each is on roll."""
        self._conn = conn
        self._contexts = contexts
        # The rules read the roster record typed; only pupils on roll are evaluated.
        self._pupils = {key: contexts[key[0]].pupil(record)
                        for key, (record, on_roll) in records.items() if on_roll}
        self._now = now
        self._placed: list[decision_store.Placed] = []

    async def run(self, register_marks: list[RegisterMark], removals: list[PupilRemoved]) -> int:
        """Run the rules and store their decisions; returns how many cancellations of requests
        already handed to the notifier were queued (the relay should be woken)."""
        for removal in removals:
            facts = RemovalFacts(school_urn=removal.school_urn, pupil_id=removal.pupil_id,
                                 removed_on=removal.date, ground=removal.ground, now=self._now)
            for on_removal in _REMOVAL_RULES:
                self._place(on_removal(facts), removal.school_urn, removal.pupil_id,
                            removal.date)
        by_school: dict[str, dict[str, set[dt.date]]] = defaultdict(lambda: defaultdict(set))
        for mark in register_marks:
            by_school[mark.school_urn][mark.pupil_id].add(mark.date)
        if by_school:
            await self._evaluate(by_school)
        return await decision_store.apply_all(self._conn, self._placed, self._now)

    def _place(self, decision: Decision | None, urn: str, pupil_id: str, day: dt.date) -> None:
        if decision is not None:
            self._placed.append((decision, urn, pupil_id, day))

    async def _evaluate(self, by_school: dict[str, dict[str, set[dt.date]]]) -> None:
        """Load what every school of the batch needs in a few queries for the whole batch (a
        busy morning's batch spans dozens of schools), then run the rules school by school."""
        pupils = self._pupils
        plans: dict[str, tuple[SchoolContext, dict[str, set[dt.date]], dt.date, dt.date]] = {}
        for urn, pupil_days in by_school.items():
            context = self._contexts[urn]
            on_roll = {p: d for p, d in pupil_days.items() if (urn, p) in pupils}
            if not on_roll:
                continue
            policy = context.policy
            lookback = max(policy.day3_home_visit.day, policy.continuous_absence_days) + 2
            since = context.calendar.school_days_back(min(min(d) for d in on_roll.values()),
                                                      lookback)
            plans[urn] = (context, on_roll, since, local_date(self._now, context.tz))
        if not plans:
            return
        # Most pupils of a morning were in school the day before: their days start no
        # episode and follow none, so the rules need only those two days. The look-back is
        # read for the others alone (on the 190th day of a year, reading it for every
        # pupil returned a dozen days of marks each and was the morning's costliest query).
        end = max(plan[3] for plan in plans.values())
        marks = await history.marks_between_many(
            self._conn, {(urn, p) for urn, plan in plans.items() for p in plan[1]},
            min(_day_before(min(min(d) for d in plan[1].values()), plan[0].calendar)
                for plan in plans.values()), end)
        deeper = {(urn, pupil_id): since for urn, (context, on_roll, since, _) in plans.items()
                  for pupil_id, days in on_roll.items()
                  if _near_an_episode(days, marks[urn][pupil_id], context.calendar)}
        if deeper:
            more = await history.marks_between_many(self._conn, deeper, min(deeper.values()),
                                                    end)
            for urn, pupil_id in deeper:
                marks[urn][pupil_id] = more[urn][pupil_id]
        fresh: dict[str, dict[str, set[dt.date]]] = {}
        for urn, (context, on_roll, since, today) in plans.items():
            current = await self._school(context, on_roll,
                                         _on_or_after(marks.get(urn, {}), since), since, today)
            if current:
                fresh[urn] = {p: on_roll[p] for p in current}
        # docs/rules.md "Stale marks": rates move, but only a current mark can contact anybody.
        if fresh:
            await self._rates(fresh)

    async def _school(self, context: SchoolContext, on_roll: dict[str, set[dt.date]],
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
            pupil = self._pupils[(context.urn, pupil_id)]
            for day in sorted(days):
                if not is_stale(day, self._now, calendar, policy, tz):
                    fresh.add(pupil_id)
                previous = episodes.episode_ending_before(day, pupil_marks, calendar, since)
                day_facts = DayFacts(
                    school_urn=context.urn, pupil=pupil, day=day,
                    codes=pupil_marks.get(day, {}), previous_day_absent=previous is not None,
                    calendar=calendar, policy=policy, now=self._now, tz=tz)
                for on_day in _DAY_RULES:
                    self._place(on_day(day_facts), context.urn, pupil_id, day)
            for episode in {ep.start: ep for ep in starts}.values():
                episode_facts = EpisodeFacts(
                    school_urn=context.urn, pupil=pupil, episode=episode, marks=pupil_marks,
                    calendar=calendar, policy=policy, now=self._now, tz=tz)
                day = episode.nth_day(policy.day3_home_visit.day) or episode.days[-1]
                for on_episode in _EPISODE_RULES:
                    self._place(on_episode(episode_facts), context.urn, pupil_id, day)
        return fresh

    def _episode_around(self, day: dt.date, pupil_marks: episodes.MarksByDay,
                        context: SchoolContext, since: dt.date) -> episodes.Episode | None:
        calendar = context.calendar
        return (episodes.episode_containing(day, pupil_marks, calendar, since)
                or episodes.episode_ending_before(day, pupil_marks, calendar, since))

    async def _rates(self, fresh: dict[str, dict[str, set[dt.date]]]) -> None:
        conn = self._conn
        keys = {(urn, p) for urn, pupil_days in fresh.items() for p in pupil_days}
        todays = {urn: local_date(self._now, self._contexts[urn].tz) for urn in fresh}
        years = {urn: school_year_start(today) for urn, today in todays.items()}
        counts = await counters.load(conn, [(urn, p, years[urn]) for urn, p in keys])
        states = await history.load_states_many(conn, keys)
        windows = {urn: penalty_notice_threshold.window_from(
                       min(min(d) for d in pupil_days.values()), self._contexts[urn].calendar,
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
            school_sessions = _on_or_after(sessions.get(urn, {}), windows[urn],
                                           set(context.policy.penalty_notice.codes))
            scopes = {"year": str(year.year), "all": ""}
            for pupil_id in sorted(pupil_days):
                facts = RateFacts(
                    school_urn=urn, pupil=self._pupils[(urn, pupil_id)],
                    counts=counts[(urn, pupil_id, year)], year_start=year,
                    unauthorised_sessions=[day for day, by_session in
                                           school_sessions.get(pupil_id, {}).items()
                                           for _ in by_session.values()],
                    calendar=context.calendar, policy=context.policy, now=self._now,
                    tz=context.tz)
                for rule in _RATE_RULES:
                    assert rule.on_rates is not None
                    state_key = (pupil_id, rule.id, scopes[rule.state_scope or "all"])
                    stored = school_states.get(state_key)
                    before = RuleState() if stored is None else RuleState(*stored)
                    after, decision = rule.on_rates(facts, before)
                    if rule.state_scope is not None and after != before:
                        school_changed[state_key] = (after.armed, after.crossings,
                                                     after.covered_until)
                    self._place(decision, urn, pupil_id, today)
            changed[urn] = school_changed
        await history.save_states_many(conn, changed, self._now)


def _day_before(day: dt.date, calendar: SchoolCalendar) -> dt.date:
    return calendar.previous_school_day(day) or day


def _near_an_episode(days: set[dt.date], pupil_marks: episodes.MarksByDay,
                     calendar: SchoolCalendar) -> bool:
    """Whether any of these days may belong to or follow an absence episode (the pupil's
    look-back is needed): the day absent, or the school day before it absent or not counted
    (not-possible sessions only). Otherwise `episode_containing` and `episode_ending_before`
    stop at those two days, whatever came earlier."""
    for day in days:
        if episodes.day_kind(pupil_marks.get(day)) is episodes.DayKind.ABSENT:
            return True
        before = calendar.previous_school_day(day)
        if before is not None and episodes.day_kind(pupil_marks.get(before)) in (
                episodes.DayKind.ABSENT, episodes.DayKind.NEUTRAL):
            return True
    return False


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
