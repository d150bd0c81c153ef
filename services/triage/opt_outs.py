"""docs/rules.md "family_opted_out": a contact replied STOP (`FamilyOptedOut`, sent by the
notifier once per new opt-out). Each school whose roster has the number, among those the STOP
holds for, tells its attendance officer once what happens instead (an email through the
notifier, like any professional alert), and the decision is logged for each child."""

from __future__ import annotations

import datetime as dt
import logging

from broker_messages.contact import ContactRequest, FamilyOptedOut, PupilRef
from broker_messages.topology import CONTACT_REQUEST_ROUTING_KEY
from servicekit.clock import local_date
from servicekit.outbox import enqueue
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import decisions as decision_store
from triage.decisions import Outcome
from triage.explanations import Family, families_with
from triage.models import decisions, outbox
from triage.rules import family_opted_out
from triage.rules.decisions import key
from triage.schools import SchoolContext, SchoolContextCache

log = logging.getLogger(__name__)


async def pass_on(conn: AsyncConnection, event: FamilyOptedOut, cache: SchoolContextCache,
                  now: dt.datetime) -> None:
    found = await families_with(conn, event.from_phone)
    schools = sorted(set(found) & set(event.school_urns) if event.school_urns else found)
    contexts = await cache.load(conn, schools) if schools else {}
    for school_urn in schools:
        await _tell_officer(conn, event, contexts[school_urn], found[school_urn], now)


def _instead(family: Family, phone: str, context: SchoolContext) -> str:
    """Per child when there are several: each child's next contact may differ."""
    said = []
    for pupil in family.pupils:
        stopped = min((c for c in pupil.contacts if c.phone == phone), key=lambda c: c.priority)
        sentence = family_opted_out.instead(pupil, stopped, context.policy)
        said.append(sentence if len(family.pupils) == 1 else f"{pupil.given_name}: {sentence}")
    return ". ".join(said)


async def _tell_officer(conn: AsyncConnection, event: FamilyOptedOut, context: SchoolContext,
                        family: Family, now: dt.datetime) -> None:
    keys = {p.id: family_opted_out.dedup_key(context.urn, p.id, event.message_id)
            for p in family.pupils}
    if await conn.scalar(select(exists().where(decisions.c.dedup_key.in_(list(keys.values()))))):
        return  # redelivered
    officers = context.staff_recipients("attendance_officer")
    instead = _instead(family, event.from_phone, context)
    request_id = key(family_opted_out.ID, context.urn, "+".join(sorted(keys)),
                     event.message_id)[:200]
    if officers:
        request = ContactRequest(
            request_id=request_id, rule=family_opted_out.ID, school=context.school,
            date=local_date(event.received_at, context.tz),
            pupils=tuple(PupilRef(pupil_id=p.id, given_name=p.given_name,
                                  family_name=p.family_name) for p in family.pupils),
            recipients=tuple(officers), details={"instead": instead}, requested_at=now)
        await enqueue(conn, outbox, message_id=request_id,
                      routing_key=CONTACT_REQUEST_ROUTING_KEY,
                      body=request.model_dump_json(by_alias=True).encode(), now=now)
    for pupil_id, dedup_key in keys.items():
        await decision_store.record(
            conn, rule=family_opted_out.ID, school_urn=context.urn, pupil_id=pupil_id,
            dedup_key=dedup_key,
            outcome=Outcome.REQUESTED if officers else Outcome.SUPPRESSED,
            reason=("a contact replied STOP: the attendance officer is told what happens "
                    "instead" if officers else
                    "a contact replied STOP; the school names no attendance officer to tell"),
            inputs={"contact_refs": family.contact_refs, "instead": instead,
                    **({"request_id": request_id} if officers else {})}, now=now)
    log.info("triage.family.opted_out school_urn=%s pupils=%d told=%d", context.urn,
             len(keys), len(officers))
