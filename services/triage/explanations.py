"""docs/rules.md "Parents who tell the school first": a text from a number on a school's roster
that answers nothing the notifier sent (`InboundUnmatched`) is kept as a *pending explanation*
for the school, against the pupils whose contact has that number.

When the number is one school's alone (and no contact with it is `no_contact`), it counts as
hearing from the family, exactly as a reply does (`triage.heard`): pending chasing is cancelled,
family contacts already handed over for a current day are recalled, and the first-day contact
and day-3 visit re-checks see it (`Need.REPLY`), so a report at 07:45 stops the 09:30 text of a
mark that arrives at 08:50. A number on more than one school's roster goes to each only as
"may concern": shown, changing nothing. The school accepts an explanation by re-coding the
day's `N` marks (published as `register.mark` events, the normal pipeline) or dismisses it,
which forgets the reply and brings back what it cancelled. Bodies and numbers are never
logged."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from broker_messages.contact import InboundUnmatched
from servicekit.clock import local_date
from servicekit.database import dialect_insert
from sqlalchemy import Row, Text, cast, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import decisions as decision_store
from triage.decisions import ActionStatus, Placed
from triage.heard import FAMILY_RECALLED, forget_reply, record_reply
from triage.models import explanation_pupils, explanations, pupils, scheduled_actions
from triage.rules import Schedule, first_day_contact
from triage.rules.marks import is_stale
from triage.school_document import Pupil, stored_pupil
from triage.schools import SchoolContext, SchoolContextCache

log = logging.getLogger(__name__)


class ExplanationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


@dataclass
class Family:
    """The pupils at one school whose contacts have the number, and those contacts."""

    pupils: list[Pupil] = field(default_factory=list)
    contact_refs: list[str] = field(default_factory=list)
    no_contact: bool = False

    @property
    def pupil_ids(self) -> list[str]:
        return [pupil.id for pupil in self.pupils]


def reply_id(explanation_id: int) -> str:
    """The explanation's name among the replies (`parent_replies`) and in decision inputs."""
    return f"explanation:{explanation_id}"


async def families_with(conn: AsyncConnection, phone: str) -> dict[str, Family]:
    """Per school, the pupils on roll with a contact at this number. The JSON text is narrowed
    in SQL and each record then read typed: a number is only a match on a contact's phone."""
    rows = await conn.execute(
        select(pupils.c.school_urn, pupils.c.pupil_id, pupils.c.record)
        .where(pupils.c.on_roll.is_(True), cast(pupils.c.record, Text).contains(f'"{phone}"'))
        .order_by(pupils.c.school_urn, pupils.c.pupil_id))
    found: dict[str, Family] = {}
    for school_urn, pupil_id, record in rows:
        pupil = stored_pupil(record)
        contacts = [c for c in pupil.contacts if c.phone == phone]
        if not contacts:
            continue
        family = found.setdefault(school_urn, Family())
        family.pupils.append(pupil)
        family.contact_refs.extend(f"{pupil_id}/contact/{c.priority}" for c in contacts)
        family.no_contact |= any(c.no_contact for c in contacts)
    return found


async def report_inbound(conn: AsyncConnection, message: InboundUnmatched,
                         cache: SchoolContextCache, now: dt.datetime) -> None:
    """Keep the text for each school whose roster has the number (once per message and
    school, however often it is delivered); hear the family when it is one school's alone."""
    found = await families_with(conn, message.from_phone)
    if not found:
        log.info("triage.explanation.unknown_number message_id=%s", message.message_id)
        return
    contexts = await cache.load(conn, sorted(found))
    one_school = len(found) == 1
    for school_urn, family in found.items():
        context = contexts[school_urn]
        matched = one_school and not family.no_contact
        stored = (await conn.execute(
            dialect_insert(conn.engine)(explanations).values(
                school_urn=school_urn, message_id=message.message_id,
                date=local_date(message.received_at, context.tz), body=message.body,
                contact_refs=family.contact_refs, matched=matched,
                status=ExplanationStatus.PENDING, cancelled=[],
                received_at=message.received_at,
            ).on_conflict_do_nothing().returning(explanations.c.id))).scalar()
        if stored is None:
            continue  # redelivered
        await conn.execute(explanation_pupils.insert(), [
            {"explanation_id": stored, "pupil_id": p, "school_urn": school_urn}
            for p in family.pupil_ids])
        if matched:
            cancelled = await _hear_family(conn, stored, school_urn, family, message,
                                           context, now)
            await conn.execute(update(explanations).where(explanations.c.id == stored)
                               .values(cancelled=cancelled))
        log.info("triage.explanation.recorded explanation_id=%s school_urn=%s pupils=%d "
                 "matched=%s", stored, school_urn, len(family.pupil_ids), matched)


async def _hear_family(conn: AsyncConnection, explanation_id: int, school_urn: str,
                       family: Family, message: InboundUnmatched, context: SchoolContext,
                       now: dt.datetime) -> list[str]:
    """As a reply, and as staff who spoke to the family: returns the keys cancelled."""
    reason = "a parent told the school about the absence: stop chasing this episode"
    name = reply_id(explanation_id)
    recorded = await record_reply(
        conn, school_urn, family.pupil_ids, reply_id=name, contact_ref=family.contact_refs[0],
        received_at=message.received_at, reason=reason, now=now)
    cancelled = recorded[1] if recorded else []

    def current(day: dt.date) -> bool:
        return not is_stale(day, now, context.calendar, context.policy, context.tz)

    for pupil_id in family.pupil_ids:
        cancelled += await decision_store.recall_requested(
            conn, school_urn, pupil_id, FAMILY_RECALLED, reason, now, current,
            inputs={"reply_id": name})
    return cancelled


async def row_of(conn: AsyncConnection, school_urn: str,
                      explanation_id: int) -> Row[Any] | None:
    return (await conn.execute(
        select(explanations).where(explanations.c.id == explanation_id,
                                   explanations.c.school_urn == school_urn))).first()


async def pupils_of(conn: AsyncConnection, explanation_ids: Sequence[int]
                    ) -> dict[int, list[str]]:
    rows = await conn.execute(
        select(explanation_pupils.c.explanation_id, explanation_pupils.c.pupil_id)
        .where(explanation_pupils.c.explanation_id.in_(list(explanation_ids)))
        .order_by(explanation_pupils.c.pupil_id))
    found: dict[int, list[str]] = {}
    for explanation_id, pupil_id in rows:
        found.setdefault(explanation_id, []).append(pupil_id)
    return found


async def settle(conn: AsyncConnection, explanation_id: int, status: ExplanationStatus,
                 by: str, now: dt.datetime, code: str | None = None) -> bool:
    """Accepted or dismissed, from pending only; False if another caller settled it first."""
    moved = await conn.execute(
        update(explanations)
        .where(explanations.c.id == explanation_id,
               explanations.c.status == ExplanationStatus.PENDING)
        .values(status=status, decided_at=now, decided_by=by, code=code))
    return bool(moved.rowcount)


async def undo_hearing(conn: AsyncConnection, row: Row[Any], pupil_ids: Sequence[str],
                       now: dt.datetime) -> list[str]:
    """A dismissed report was not the family being heard: forget the reply and bring back what
    it cancelled, and the report day's first-day contacts its re-check cancelled; each goes at
    its own time, or at the next scheduler pass if that has passed (the planners re-check the
    register then). Returns the keys brought back."""
    if not row.matched:
        return []
    await forget_reply(conn, reply_id(row.id))
    keys = {*row.cancelled, *(first_day_contact.dedup_key(row.school_urn, p, row.date)
                             for p in pupil_ids)}
    actions = (await conn.execute(
        select(scheduled_actions).where(scheduled_actions.c.dedup_key.in_(sorted(keys)),
                                        scheduled_actions.c.status == ActionStatus.CANCELLED)
    )).all()
    reason = f"the school dismissed {reply_id(row.id)}: the family has not been heard"
    placed: list[Placed] = [
        (Schedule(a.rule, a.dedup_key, max(a.due_at, now), reason,
                  {"date": a.date.isoformat(), "reply_id": reply_id(row.id)},
                  episode_start=a.episode_start), a.school_urn, a.pupil_id, a.date)
        for a in actions]
    if placed:
        await decision_store.apply_all(conn, placed, now)
    return [a.dedup_key for a in actions]
