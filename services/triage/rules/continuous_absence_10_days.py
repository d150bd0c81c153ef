"""docs/rules.md "continuous_absence_10_days": 10 consecutive school days of unauthorised
absence are returned to the local authority (the Registration Regulations)."""

from __future__ import annotations

import datetime as dt

from broker_messages.codes import Category, category

from triage.rules.decisions import Decision, Schedule, Suppress, Withdraw, key
from triage.rules.episodes import Episode, MarksByDay
from triage.rules.marks import is_stale
from triage.rules.professional import staff_details
from triage.rules.recipients import authority_of, local_authority
from triage.rules.rule import DueAction, DueFacts, EpisodeFacts, Need, Outreach, Rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "continuous_absence_10_days"


def dedup_key(school_urn: str, pupil_id: str, episode_start: dt.date) -> str:
    # docs/rules.md: dedup key "pupil + episode".
    return key(ID, school_urn, pupil_id, episode_start)


def longest_unauthorised_run(episode: Episode, marks: MarksByDay) -> tuple[dt.date, ...]:
    """The longest run of the episode's days on which every session is unauthorised."""
    best: list[dt.date] = []
    run: list[dt.date] = []
    for day in episode.days:
        if all(category(code) in (Category.UNAUTHORISED, Category.NOT_POSSIBLE)
               for code in marks[day].values()):
            run.append(day)
            best = run if len(run) > len(best) else best
        else:
            run = []
    return tuple(best)


def decide(facts: EpisodeFacts) -> Decision | None:
    episode, policy = facts.episode, facts.policy
    needed = policy.continuous_absence_days
    dedup = dedup_key(facts.school_urn, facts.pupil.id, episode.start)
    run = longest_unauthorised_run(episode, facts.marks)
    inputs = {"episode_start": episode.start.isoformat(), "unauthorised_days": len(run),
              "needed": needed}
    if len(run) < needed:
        return Withdraw(ID, dedup,
                        f"{len(run)} consecutive unauthorised school day(s), fewer than {needed}",
                        inputs)
    inputs["run"] = [run[0].isoformat(), run[-1].isoformat()]
    if is_stale(run[needed - 1], facts.now, facts.calendar, policy, facts.tz):
        return Suppress(ID, dedup, "stale marks: the run was complete long ago", inputs,
                        episode_start=episode.start)
    return Schedule(ID, dedup, facts.now,
                    f"{len(run)} consecutive school days of unauthorised absence", inputs,
                    episode_start=episode.start)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    # The statutory return: nothing to re-check, the run happened. The episode is read for
    # the run's length and what was set going in it.
    run = longest_unauthorised_run(facts.episode, facts.marks) if facts.episode else ()
    # The rule fired on a run of at least the policy's days; the marks read for the message
    # may cover only the episode's recent days, so the run is never reported shorter.
    days = max(len(run), school.policy.continuous_absence_days)
    return Outreach(professionals=local_authority(school.urn, authority_of(school.document),
                                                  "local_authority"),
                    staff_details={"school_days": days,
                                   "contact_attempts": facts.family_contacts_requested,
                                   "family_replied": int(facts.replied),
                                   "home_visit_planned": int(facts.home_visit_planned),
                                   **staff_details(ID, due.date, school, facts.year_outreach)},
                    episode_start=due.episode_start)


RULE = Rule(id=ID, on_episode=decide, plan=plan,
            needs=frozenset({Need.EPISODE, Need.EPISODE_OUTREACH, Need.REPLY,
                             Need.YEAR_OUTREACH}))
