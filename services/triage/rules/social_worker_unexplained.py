"""docs/rules.md "social_worker_unexplained": the DfE summary of responsibilities, pupils with
a social worker: "inform the pupil's social worker if there are any unexplained absences".

One alert per school day (the first N session of the day), due once the registers have closed
so a parent's 9 o'clock call to the office can still explain it. `looked_after_unexplained`
decides and re-checks the same way (`unexplained_alert`, `unexplained_still_due`), and its
alert carries the same `alert_details`."""

from __future__ import annotations

import datetime as dt

from triage.rules.decisions import Decision, Schedule, Suppress, Withdraw, key
from triage.rules.marks import describe, is_stale, is_unexplained, registers_closed_at
from triage.rules.professional import staff_details
from triage.rules.recipients import social_worker
from triage.rules.rule import DayFacts, DueAction, DueFacts, Need, Outreach, Rule
from triage.rules.unexplained_not_recoded import sessions_still_unexplained
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "social_worker_unexplained"


def unexplained_alert(rule: str, facts: DayFacts, about: str) -> Decision:
    """An `N` for a pupil others must hear about; dedup key "pupil + date"."""
    day, codes, policy = facts.day, facts.codes, facts.policy
    dedup = key(rule, facts.school_urn, facts.pupil.id, day)
    inputs = {"date": day.isoformat(), "codes": dict(codes)}
    if not is_unexplained(codes):
        return Withdraw(rule, dedup, f"re-coded {describe(codes)}: no longer unexplained", inputs)
    if not facts.calendar.is_school_day(day):
        return Suppress(rule, dedup, "mark is for a day that is not a school day", inputs)
    if is_stale(day, facts.now, facts.calendar, policy, facts.tz):
        return Suppress(rule, dedup,
                        f"stale mark: more than {policy.max_action_age_days} school day(s) old",
                        inputs)
    due_at = max(registers_closed_at(day, policy, facts.tz), facts.now)
    return Schedule(rule, dedup, due_at, f"unexplained absence (N) of a pupil {about}", inputs)


def unexplained_still_due(facts: DueFacts) -> str | None:
    """docs/rules.md: "not sent if the day's marks are no longer `N` when it falls due"."""
    if not is_unexplained(facts.codes):
        return f"re-coded {describe(facts.codes)} before the alert was due"
    return None


def alert_details(due: DueAction, facts: DueFacts,
                  school: SchoolContext) -> dict[str, str | int | float]:
    """What the professional needs to act without ringing round first: the sessions still N,
    how many family contacts triage has requested in the episode, whether a home visit is
    planned, whom at the school to call (the attendance officer, on the school's phone) and by
    when (that day)."""
    return {
        "sessions": " and ".join(sessions_still_unexplained(facts.codes)),
        "contact_attempts": facts.family_contacts_requested,
        "home_visit_planned": int(facts.home_visit_planned),
        **staff_details(due.rule, due.date, school),
    }


# The day's codes to re-check; the episode and what was set going in it for `alert_details`.
ALERT_NEEDS = frozenset({Need.DAY_CODES, Need.EPISODE, Need.EPISODE_OUTREACH})


def decide(facts: DayFacts) -> Decision | None:
    if facts.pupil.social_worker is None:
        return None
    return unexplained_alert(ID, facts, "with a social worker")


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    reason = unexplained_still_due(facts)
    if reason:
        return Outreach(cancel=reason)
    return Outreach(professionals=social_worker(pupil), details=alert_details(due, facts, school))


# docs/rules.md "Amendments": re-coding the N recalls the alert even once handed over.
RULE = Rule(id=ID, on_day=decide, plan=plan, needs=ALERT_NEEDS,
            recalled_after_request=True)
