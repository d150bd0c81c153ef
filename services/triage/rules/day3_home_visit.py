"""docs/rules.md "day3_home_visit": day 3 of an episode and nobody has heard, so the attendance
officer visits (the example school policy §5: "visit you at home if we have not heard from you
by day 3")."""

from __future__ import annotations

import datetime as dt

from broker_messages.codes import UNEXPLAINED

from triage.rules.decisions import Decision, Schedule, Suppress, Withdraw, key
from triage.rules.episodes import Episode, MarksByDay
from triage.rules.marks import is_stale, registers_closed_at
from triage.rules.professional import staff_details
from triage.rules.rule import DueAction, DueFacts, EpisodeFacts, Need, Outreach, Rule, TaskToOpen
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "day3_home_visit"
# The task's kind: docs/contract.md names it "home_visit", not by the rule.
HOME_VISIT = "home_visit"


def dedup_key(school_urn: str, pupil_id: str, episode_start: dt.date) -> str:
    # docs/rules.md "day3_home_visit": dedup key "pupil + episode (its first day)".
    return key(ID, school_urn, pupil_id, episode_start)


def unheard(episode: Episode, marks: MarksByDay, through: int) -> bool:
    """Every session of the first `through` days is still N: nobody has heard."""
    return all(code == UNEXPLAINED
               for day in episode.days[:through] for code in marks[day].values())


def decide(facts: EpisodeFacts) -> Decision | None:
    episode, policy = facts.episode, facts.policy
    n = policy.day3_home_visit.day
    dedup = dedup_key(facts.school_urn, facts.pupil.id, episode.start)
    nth = episode.nth_day(n)
    inputs = {"episode_start": episode.start.isoformat(), "days_absent": len(episode.days),
              "day": n}
    if nth is None:
        # Not day 3 yet, or an amendment has shortened the episode: nothing may stay pending.
        return Withdraw(ID, dedup, f"episode is {len(episode.days)} school day(s) long, not {n}",
                        inputs)
    inputs["visit_day"] = nth.isoformat()
    if not unheard(episode, facts.marks, n):
        return Withdraw(ID, dedup,
                        f"a session of the first {n} days was re-coded: the school has heard",
                        inputs)
    if is_stale(nth, facts.now, facts.calendar, policy, facts.tz):
        return Suppress(ID, dedup,
                        f"stale marks: day {n} was more than {policy.max_action_age_days} "
                        "school day(s) ago", inputs, episode_start=episode.start)
    due_at = max(registers_closed_at(nth, policy, facts.tz), facts.now)
    return Schedule(ID, dedup, due_at,
                    f"day {n} of an episode and every session is still N: home visit due",
                    inputs, episode_start=episode.start)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    """docs/rules.md "day3_home_visit" re-check: "not created if the episode has changed after
    amendments, if any of those sessions was re-coded, or if a parent replied"."""
    n = school.policy.day3_home_visit.day
    start = due.episode_start or due.date
    episode = facts.episode
    if facts.replied:
        return Outreach(cancel="a parent replied during this episode: the school has heard")
    if episode is None or episode.start != start or episode.nth_day(n) is None:
        return Outreach(cancel=f"the episode changed after amendments: no longer day {n} of it")
    if not unheard(episode, facts.marks, n):
        return Outreach(cancel=f"a session of the first {n} days was re-coded: the school has heard")
    return Outreach(
        professionals=[*school.staff_recipients("attendance_officer"),
                       *school.staff_recipients("dsl")],
        details={"visit_day": due.date.isoformat()},
        staff_details={"contact_attempts": facts.family_contacts_requested,
                       **staff_details(ID, due.date, school)},
        episode_start=start,
        tasks=[TaskToOpen(HOME_VISIT, start,
                          f"nobody has heard from the family by day {n}: visit the home")],
    )


RULE = Rule(id=ID, on_episode=decide, plan=plan,
            needs=frozenset({Need.EPISODE, Need.REPLY, Need.EPISODE_OUTREACH}),
            stopped_by_reply=True)
