"""Pupils for the staff web app: a pupil's stored record with the school's contacts for it,
the pupils allocated to a social worker (or a virtual school), and "we spoke to the family",
which stops the chase as a parent's reply does (docs/rules.md "Replies") and takes back the
family contacts already handed to the notifier, without touching the register."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Annotated, Any

from broker_messages.events import Identifier, printable
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from servicekit.clock import local_date
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import decisions as decision_store
from triage.decisions import Outcome
from triage.deps import ClockDep, EngineDep, MarksWriter, SchoolsDep, TimelineReader
from triage.heard import FAMILY_RECALLED, record_reply
from triage.models import pupils, schools
from triage.rules.decisions import key
from triage.rules.marks import is_stale
from triage.schools import SchoolContext

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])
log = logging.getLogger(__name__)

SchoolUrn = Annotated[str, Query(pattern=r"^[0-9]{6,8}$")]
PupilId = Annotated[str, Path(min_length=1, max_length=64,
                              pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
# The decision log's name for staff recording that they spoke to the family.
CONTACT_MADE = "contact_made"


async def _record_of(conn: AsyncConnection, school_urn: str, pupil_id: str) -> Any:
    row = (await conn.execute(
        select(pupils.c.record, pupils.c.on_roll, pupils.c.removed_on)
        .where(pupils.c.school_urn == school_urn, pupils.c.pupil_id == pupil_id))).first()
    if row is None:
        raise HTTPException(404, "no such pupil at this school")
    return row


def _staff(context: SchoolContext, role: str) -> list[dict[str, Any]]:
    return [{"name": m["name"], "email": m["email"], "phone": m.get("phone")}
            for m in context.document.get("staff") or [] if m.get("role") == role]


@router.get("/pupils/{pupil_id}")
async def pupil_record(pupil_id: PupilId, school_urn: SchoolUrn, engine: EngineDep,
                       cache: SchoolsDep, caller: TimelineReader) -> dict[str, Any]:
    """The pupil's roster record as stored, with the school's number and the people to ask."""
    ensure_school(caller, school_urn)
    async with engine.connect() as conn:
        row = await _record_of(conn, school_urn, pupil_id)
        context = (await cache.load(conn, [school_urn]))[school_urn]
    pupil = context.pupil(row.record)
    return {
        "school_urn": school_urn, "pupil_id": pupil.id, "given_name": pupil.given_name,
        "family_name": pupil.family_name, "year_group": pupil.year_group,
        "on_roll": row.on_roll, "removed_on": row.removed_on,
        "looked_after": pupil.looked_after, "ehcp": pupil.ehcp,
        "social_worker": pupil.social_worker.model_dump() if pupil.social_worker else None,
        "contacts": [c.model_dump() for c in sorted(pupil.contacts, key=lambda c: c.priority)],
        "school": {"urn": school_urn, "name": context.name, "phone": context.phone,
                   "attendance_officers": _staff(context, "attendance_officer"),
                   "dsls": _staff(context, "dsl")},
    }


@router.get("/pupils")
async def pupils_of_social_worker(
    engine: EngineDep, cache: SchoolsDep, caller: TimelineReader,
    social_worker_email: Annotated[str, Query(min_length=3, max_length=254,
                                              pattern=r"^[^@\s]+@[^@\s]+$")],
) -> list[dict[str, Any]]:
    """Pupils on roll, in the schools the key serves, whose social worker has this address;
    and, when it is a school's virtual school address, that school's looked-after pupils."""
    address = social_worker_email.lower()
    worker_email = func.lower(pupils.c.record[("social_worker", "email")].as_string())
    async with engine.connect() as conn:
        urns = (sorted(caller.schools) if caller.schools is not None
                else (await conn.execute(select(schools.c.urn))).scalars().all())
        contexts = await cache.load(conn, urns) if urns else {}
        virtual = sorted(urn for urn, context in contexts.items()
                         if ((context.document.get("local_authority") or {})
                             .get("virtual_school_email") or "").lower() == address)
        allocated = worker_email == address
        if virtual:
            allocated = allocated | (
                pupils.c.school_urn.in_(virtual)
                & pupils.c.record["looked_after"].as_boolean().is_(True))
        rows = (await conn.execute(
            select(pupils.c.school_urn, pupils.c.pupil_id, pupils.c.record)
            .where(pupils.c.school_urn.in_(sorted(contexts)), pupils.c.on_roll.is_(True),
                   allocated)
            .order_by(pupils.c.school_urn, pupils.c.pupil_id))).all()
    found = []
    for urn, pupil_id, record in rows:
        pupil = contexts[urn].pupil(record)
        found.append({"school_urn": urn, "school_name": contexts[urn].name,
                      "pupil_id": pupil_id, "given_name": pupil.given_name,
                      "family_name": pupil.family_name, "year_group": pupil.year_group,
                      "looked_after": pupil.looked_after})
    return found


class ContactMade(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: Identifier  # the member of staff, as the web app names them
    note: Annotated[str, Field(max_length=2000), AfterValidator(printable)] | None = None


@router.post("/pupils/{pupil_id}/contact-made")
async def contact_made(pupil_id: PupilId, school_urn: SchoolUrn, body: ContactMade,
                       engine: EngineDep, clock: ClockDep, cache: SchoolsDep,
                       caller: MarksWriter) -> dict[str, list[str]]:
    """Staff spoke to the family: chasing stops as for a parent's reply (kept in the replies
    as `staff:<uuid>` from `staff:<by>`), and the family contacts already handed over for a
    current day are cancelled at the notifier (`contact.cancel`, as an amendment does). The
    register is not touched: only the school re-codes. A second call cancels nothing more."""
    ensure_school(caller, school_urn)
    now = clock.now()
    reason = "staff spoke to the family"
    reply_id = f"staff:{uuid.uuid4()}"
    async with engine.begin() as conn:
        await _record_of(conn, school_urn, pupil_id)
        context = (await cache.load(conn, [school_urn]))[school_urn]
        recorded = await record_reply(
            conn, school_urn, [pupil_id], reply_id=reply_id, contact_ref=f"staff:{body.by}",
            received_at=now, reason=f"{reason}: stop chasing this episode", now=now)
        cancelled = recorded[1] if recorded else []

        def current(day: dt.date) -> bool:
            return not is_stale(day, now, context.calendar, context.policy, context.tz)

        cancelled += await decision_store.recall_requested(
            conn, school_urn, pupil_id, FAMILY_RECALLED, reason, now, current,
            inputs={"reply_id": reply_id})
        today = local_date(now, context.tz)
        await decision_store.record(
            conn, rule=CONTACT_MADE, school_urn=school_urn, pupil_id=pupil_id,
            dedup_key=key(CONTACT_MADE, school_urn, pupil_id, today), outcome=Outcome.CANCELLED,
            reason=reason, now=now,
            inputs={"by": body.by, "reply_id": reply_id, "cancelled": cancelled,
                    **({"note": body.note} if body.note else {})})
    log.info("triage.contact_made school_urn=%s pupil_id=%s cancelled=%d", school_urn,
             pupil_id, len(cancelled))
    return {"cancelled": cancelled}
