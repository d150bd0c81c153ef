"""docs/rules.md "family_unreachable": never silence. When nobody in a family can be reached
about a rule that must reach them (`Rule.must_reach_family`), the attendance officer (and the
social worker) hear, and the officer gets a task.

Raised two ways: by triage's scheduler when no family contact can be used at all (`raised`),
and by the notifier when every contact was tried and none was reached (`reported`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from broker_messages.contact import Recipient

from triage.rules.decisions import key
from triage.rules.professional import staff_details
from triage.rules.recipients import social_worker, unreachable_because
from triage.rules.rule import DueAction, Rule, TaskToOpen
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "family_unreachable"


def dedup_key(school_urn: str, pupil_id: str, day: dt.date, about_rule: str) -> str:
    # docs/rules.md "family_unreachable": dedup key "pupil + date + rule".
    return key(ID, school_urn, pupil_id, day, about_rule)


def _task(about: str, why: str, day: dt.date) -> TaskToOpen:
    return TaskToOpen(ID, day, f"{about}: {why}. Reach the family another way today.")


@dataclass(frozen=True)
class Unreachable:
    """What the caller does: open `task`, alert `alerted` (if anybody), record `reason`."""

    task: TaskToOpen
    alerted: list[Recipient]
    details: dict[str, str | int | float]
    reason: str
    why: str


def raised(due: DueAction, school: SchoolContext, pupil: Pupil,
           skipped: list[dict[str, str]]) -> Unreachable:
    """No family contact can be used for `due` (none on the roster, no address, court order)."""
    why = unreachable_because(skipped)
    about = due.rule.replace("_", " ")
    return Unreachable(
        task=_task(about, why, due.date),
        alerted=[*school.staff_recipients("attendance_officer"), *social_worker(pupil)],
        details={"about_rule": about, "about_rule_id": due.rule, "why": why,
                 "contacts_tried": 0, **staff_details(ID, due.date, school)},
        reason=f"the family cannot be contacted about {about}: {why}", why=why)


def reported(rule: str, contacts_tried: int, day: dt.date) -> tuple[TaskToOpen, str]:
    """The notifier tried every contact; it has alerted the officer already. The task to open
    and the reason to record."""
    about = rule.replace("_", " ")
    why = (f"{contacts_tried} contact(s) tried in priority order: none was delivered "
           "and nobody replied")
    return _task(about, why, day), f"the family could not be reached about {about}: {why}"


# Never scheduled as an action of its own: it stands in for another rule's family message.
RULE = Rule(id=ID, plan=None)
