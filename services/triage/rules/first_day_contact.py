"""docs/rules.md "first_day_contact": the first morning of an unexplained absence, the family
hears (the example school policy §5: "telephone or text you on the first day of absence if we
have not heard from you")."""

from __future__ import annotations

import datetime as dt

from broker_messages.contact import Channel

from triage.rules.decisions import Decision, Schedule, Suppress, Withdraw, key
from triage.rules.marks import describe, is_stale, is_unexplained, registers_closed_at
from triage.rules.recipients import family_recipients
from triage.rules.rule import DayFacts, DueAction, DueFacts, Need, Outreach, Rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "first_day_contact"


def dedup_key(school_urn: str, pupil_id: str, day: dt.date) -> str:
    # docs/rules.md "first_day_contact": dedup key "pupil + date".
    return key(ID, school_urn, pupil_id, day)


def decide(facts: DayFacts) -> Decision | None:
    """Decided when a mark arrives; `plan` re-checks at send time."""
    day, codes, policy = facts.day, facts.codes, facts.policy
    dedup = dedup_key(facts.school_urn, facts.pupil.id, day)
    inputs = {"date": day.isoformat(), "codes": dict(codes)}
    if not is_unexplained(codes):
        return Withdraw(ID, dedup, f"re-coded {describe(codes)}: no longer unexplained", inputs)
    if not facts.calendar.is_school_day(day):
        return Suppress(ID, dedup, "mark is for a day that is not a school day", inputs)
    if facts.previous_day_absent:
        # The episode began on an earlier school day (the child has not been seen since), so
        # this is not its first day.
        return None
    if is_stale(day, facts.now, facts.calendar, policy, facts.tz):
        return Suppress(ID, dedup,
                        f"stale mark: more than {policy.max_action_age_days} school day(s) old",
                        inputs)
    due_at = registers_closed_at(day, policy, facts.tz)
    return Schedule(
        ID, dedup, due_at,
        f"unexplained absence on the first day of an episode; contact at {due_at.isoformat()}",
        inputs, episode_start=day,
    )


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    """docs/rules.md "first_day_contact" re-check: "if it has been amended to any code other
    than `N`, nothing is sent"; nor when the family has been heard that day, even before the
    mark arrived ("Parents who tell the school first")."""
    if not is_unexplained(facts.codes):
        return Outreach(cancel=f"re-coded {describe(facts.codes)} before the contact was due")
    if facts.replied:
        return Outreach(cancel="the family has been heard today: the school knows, nothing "
                               "is sent")
    if is_stale(due.date, now, school.calendar, school.policy, school.tz):
        return Outreach(
            cancel="the contact is overdue by more than max_action_age_days: too late to send")
    rule_policy = school.policy.first_day_contact
    channels: tuple[Channel, ...] = rule_policy.channels
    if rule_policy.voice:
        channels = (*channels, "voice")
    family, skipped = family_recipients(due.pupil_id, pupil.contacts, channels)
    return Outreach(family=family, skipped=skipped, episode_start=due.date)


RULE = Rule(
    id=ID, on_day=decide, plan=plan, needs=frozenset({Need.DAY_CODES, Need.REPLY}),
    family=True, must_reach_family=True,
    # docs/rules.md "Replies" stop the chase; "Amendments" recall it even once handed over.
    stopped_by_reply=True, recalled_after_request=True,
)
