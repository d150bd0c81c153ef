"""docs/rules.md "family_opted_out": a parent replied STOP. The attendance officer hears once,
with what happens instead: the contact's email (and calls, where the school makes them) still
go, and the next contact in priority order is tried when a contact the school must make is not
reached. Only what the roster says is used; the family's text is not passed on."""

from __future__ import annotations

from triage.policy import Policy
from triage.rules.decisions import key
from triage.rules.rule import Rule
from triage.school_document import Contact, Pupil

ID = "family_opted_out"


def dedup_key(school_urn: str, pupil_id: str, message_id: str) -> str:
    # docs/rules.md "family_opted_out": dedup key "pupil + message".
    return key(ID, school_urn, pupil_id, message_id)


def instead(pupil: Pupil, stopped: Contact, policy: Policy) -> str:
    """One sentence for the officer: what still reaches this family, in the order it is tried."""
    still = []
    if stopped.email and not stopped.no_contact:
        still.append(f"emails to {stopped.name} still go")
    if policy.first_day_contact.voice and not stopped.no_contact:
        still.append(f"first-day calls to {stopped.name} still go")
    after = sorted((c for c in pupil.contacts if c.priority > stopped.priority
                    and not c.no_contact and (c.phone or c.email)), key=lambda c: c.priority)
    if after:
        relation = f" ({after[0].relationship})" if after[0].relationship else ""
        still.append(f"then {after[0].name}{relation} is tried when {stopped.name} is not reached")
    else:
        still.append("there is no further contact to try: ask the family for another way to "
                     "reach them")
    return "; ".join(still)


RULE = Rule(id=ID, plan=None)
