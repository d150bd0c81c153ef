"""Who hears about a due action (docs/rules.md "The rules": "a rule whose action is due later
re-checks the facts it rests on when it falls due"). Reads the facts the action's rule `needs`,
then runs the rule's pure planner; the scheduler performs what it returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from servicekit.clock import at_local_time
from sqlalchemy import exists, func, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import counters, history
from triage.decisions import ActionStatus
from triage.models import replies, scheduled_actions, tasks
from triage.rates import Counts, school_year_start
from triage.rules import FAMILY_RULES, attendance_stage1, day3_home_visit, rule_named
from triage.rules.episodes import episode_containing
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, YearOutreach
from triage.school_document import Pupil
from triage.schools import SchoolContext

# How far before an episode's first day its marks are read, to see where it began.
_EPISODE_LOOKBACK_DAYS = 10


@dataclass(frozen=True)
class BatchFacts:
    """The facts most due actions need, read once for a scheduler batch: a morning's batch is
    hundreds of first-day contacts, and reading each one's day codes and replies in queries of
    its own took most of the scheduler's time (`python -m bench.profile --deployed`). Read in
    the batch's transaction, so they are the facts the actions are settled on, as before."""

    # school -> pupil -> day -> session -> code, for the batch's pupils on its due dates
    marks: dict[str, history.PupilMarks] = field(default_factory=dict)
    # (school, pupil) -> when each reply about the pupil arrived, since the earliest episode
    replies: dict[history.PupilKey, list[dt.datetime]] = field(default_factory=dict)

    def codes(self, due: DueAction) -> dict[str, str]:
        return dict(self.marks.get(due.school_urn, {}).get(due.pupil_id, {}).get(due.date, {}))

    def replied(self, due: DueAction, since: dt.datetime) -> bool:
        return any(at >= since for at in self.replies.get((due.school_urn, due.pupil_id), []))


async def batch_facts(conn: AsyncConnection, actions: Iterable[Row[Any]]) -> BatchFacts:
    """`BatchFacts` for the actions whose rules need day codes or replies: one query each."""
    by_need: dict[Need, list[Row[Any]]] = {Need.DAY_CODES: [], Need.REPLY: []}
    for action in actions:
        rule = rule_named(action.rule)
        for need, wanting in by_need.items():
            if rule is not None and need in rule.needs:
                wanting.append(action)
    marks: dict[str, history.PupilMarks] = {}
    if wanting_codes := by_need[Need.DAY_CODES]:
        marks = await history.marks_between_many(
            conn, {(a.school_urn, a.pupil_id) for a in wanting_codes},
            min(a.date for a in wanting_codes), max(a.date for a in wanting_codes))
    found: dict[history.PupilKey, list[dt.datetime]] = {}
    if wanting_replies := by_need[Need.REPLY]:
        rows = await conn.execute(
            history.pupil_rows(conn.dialect.name, replies,
                               ("school_urn", "pupil_id", "received_at")),
            history.pupil_keys(conn, {(a.school_urn, a.pupil_id) for a in wanting_replies}))
        for urn, pupil_id, received_at in rows.all():
            found.setdefault((urn, pupil_id), []).append(received_at)
    return BatchFacts(marks=marks, replies=found)


def due_action(action: Row[Any]) -> DueAction:
    return DueAction(rule=action.rule, dedup_key=action.dedup_key, school_urn=action.school_urn,
                     pupil_id=action.pupil_id, date=action.date,
                     episode_start=action.episode_start)


async def plan(conn: AsyncConnection, due: DueAction, context: SchoolContext, pupil: Pupil,
               on_roll: bool, now: dt.datetime, batch: BatchFacts | None = None) -> Outreach:
    """`batch`: the day codes and replies already read for the action's batch (`batch_facts`);
    without it they are read for this action alone."""
    rule = rule_named(due.rule)
    if rule is None or rule.plan is None:
        return Outreach(cancel=f"no rule {due.rule!r} plans scheduled actions")
    if not on_roll and not rule.acts_off_roll:
        return Outreach(cancel="pupil is no longer on roll")
    facts = await _load(conn, rule.needs, due, context, now, batch)
    return rule.plan(due, facts, context, pupil, now)


async def _load(conn: AsyncConnection, needs: frozenset[Need], due: DueAction,
                context: SchoolContext, now: dt.datetime, batch: BatchFacts | None) -> DueFacts:
    codes: dict[str, str] = {}
    pupil_marks: dict[dt.date, dict[str, str]] = {}
    episode = None
    replied = False
    year_counts: Counts | None = None
    term_counts: Counts | None = None
    requested, visit_planned = 0, False
    year_outreach = YearOutreach()
    if Need.DAY_CODES in needs:
        read = batch if batch is not None else BatchFacts(marks={context.urn: (
            await history.marks_between(conn, context.urn, [due.pupil_id], due.date, due.date))})
        codes = read.codes(due)
    if Need.EPISODE in needs:
        start = due.episode_start or due.date
        since = context.calendar.school_days_back(start, _EPISODE_LOOKBACK_DAYS)
        pupil_marks = (await history.marks_between(conn, context.urn, [due.pupil_id], since,
                                                   due.date))[due.pupil_id]
        episode = episode_containing(start, pupil_marks, context.calendar, since)
    if Need.REPLY in needs:
        start = due.episode_start or due.date
        since = at_local_time(start, dt.time(0), context.tz)
        replied = (batch.replied(due, since) if batch is not None
                   else await history.replied_since(conn, context.urn, due.pupil_id, since))
    if Need.YEAR_COUNTS in needs:
        year = school_year_start(due.date)
        year_counts = (await counters.load(conn, [(context.urn, due.pupil_id, year)])
                       ).popitem()[1]
    if Need.TERM_COUNTS in needs:
        term = next((t for t in context.calendar.terms if t.start <= due.date <= t.end), None)
        if term is not None:
            term_counts = await counters.term_counts(conn, context.urn, due.pupil_id,
                                                     term.start, due.date)
    if Need.EPISODE_OUTREACH in needs:
        start = episode.start if episode is not None else due.episode_start or due.date
        requested = await _family_contacts_requested(conn, due, start, now)
        visit_planned = await _home_visit_planned(conn, due, start)
    if Need.YEAR_OUTREACH in needs:
        year_outreach = await _year_outreach(conn, due, context)
    return DueFacts(codes=codes, marks=pupil_marks, episode=episode, replied=replied,
                    year_counts=year_counts, term_counts=term_counts,
                    family_contacts_requested=requested, home_visit_planned=visit_planned,
                    year_outreach=year_outreach)


def _of_pupil(table_columns: Any, due: DueAction) -> Any:
    return (table_columns.school_urn == due.school_urn) & (table_columns.pupil_id == due.pupil_id)


async def _family_contacts_requested(conn: AsyncConnection, due: DueAction,
                                     episode_start: dt.date, now: dt.datetime) -> int:
    """Family contact actions dated in the episode so far that were handed to the notifier, or
    fall due in this same run (a first-day contact is due with the day's alerts), so an alert
    counts the contact it goes out alongside."""
    actions = scheduled_actions.c
    count = await conn.scalar(
        select(func.count()).select_from(scheduled_actions).where(
            _of_pupil(actions, due), actions.rule.in_(FAMILY_RULES),
            actions.date.between(episode_start, due.date),
            or_(actions.status == ActionStatus.REQUESTED,
                (actions.status == ActionStatus.PENDING) & (actions.due_at <= now))))
    return int(count or 0)


async def _home_visit_planned(conn: AsyncConnection, due: DueAction,
                              episode_start: dt.date) -> bool:
    """A day-3 visit waiting or requested for the episode, or its task still open."""
    actions = scheduled_actions.c
    visit = select(actions.id).where(
        _of_pupil(actions, due), actions.rule == day3_home_visit.ID,
        actions.episode_start == episode_start,
        actions.status.in_([ActionStatus.PENDING, ActionStatus.REQUESTED]))
    task = select(tasks.c.id).where(
        _of_pupil(tasks.c, due), tasks.c.kind == day3_home_visit.HOME_VISIT,
        tasks.c.episode_start == episode_start, tasks.c.status == "open")
    return bool(await conn.scalar(select(or_(exists(visit), exists(task)))))


async def _year_outreach(conn: AsyncConnection, due: DueAction,
                         context: SchoolContext) -> YearOutreach:
    """One grouped read of the pupil's requested actions this school year (the pupil index
    narrows it to one pupil's rows): family messages, day-3 visits, the stage-1 message; and
    one count of the parents' replies, their outcome."""
    actions = scheduled_actions.c
    wanted = (*FAMILY_RULES, day3_home_visit.ID)
    year_start = school_year_start(due.date)
    rows = (await conn.execute(
        select(actions.rule, func.count(), func.max(actions.date))
        .where(_of_pupil(actions, due), actions.rule.in_(wanted),
               actions.status == ActionStatus.REQUESTED,
               actions.date.between(year_start, due.date))
        .group_by(actions.rule))).all()
    replied = await conn.scalar(
        select(func.count()).select_from(replies).where(
            _of_pupil(replies.c, due),
            replies.c.received_at >= at_local_time(year_start, dt.time(0), context.tz)))
    counts = {row[0]: (int(row[1]), row[2]) for row in rows}
    stage1 = counts.get(attendance_stage1.ID)
    return YearOutreach(
        family_contacts=sum(n for rule, (n, _) in counts.items() if rule in FAMILY_RULES),
        home_visits=counts.get(day3_home_visit.ID, (0, None))[0],
        stage1_on=stage1[1] if stage1 else None, replies=int(replied or 0))
