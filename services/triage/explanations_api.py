"""Pending explanations for the attendance officer (docs/contract.md §2, "Explanations";
docs/rules.md "Parents who tell the school first"): what families texted before anybody asked,
with the pupils it may concern; accepted by re-coding the day's `N` marks through the normal
pipeline (`register.mark` events with source `explanation:<id>`), or dismissed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any, Literal

from broker_messages.codes import UNEXPLAINED, canonical_code, is_absence
from broker_messages.events import Identifier, RegisterCode, RegisterMark, routing_key
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict
from servicekit.broker import persistent_message
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import select
from sqlalchemy.engine import Row

from triage import explanations as store
from triage.deps import ClockDep, EngineDep, MarksWriter, ServiceDep, TimelineReader
from triage.explanations import ExplanationStatus
from triage.models import explanation_pupils, explanations, marks, pupils
from triage.school_document import stored_pupil

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])

Urn = Annotated[str, Path(pattern=r"^[0-9]{6,8}$")]
ExplanationId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _classifying(code: str) -> str:
    """Accepting classifies the absence: an absence code, and not `N` again."""
    stored = canonical_code(code)
    if stored == UNEXPLAINED or not is_absence(stored):
        raise ValueError("must be an absence code other than N")
    return stored


class Acceptance(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Annotated[RegisterCode, AfterValidator(_classifying)]
    by: Identifier  # the member of staff, as the web app names them


class Dismissal(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: Identifier


class ExplanationPupil(BaseModel):
    pupil_id: str
    given_name: str
    family_name: str


class Explanation(BaseModel):
    id: int
    school_urn: str
    date: dt.date
    received_at: dt.datetime
    text: str
    # False: the number is on more than one school's roster (or a `no_contact` contact's), so
    # it only may concern these pupils and changed nothing.
    matched: bool
    status: ExplanationStatus
    pupils: list[ExplanationPupil]
    contact_refs: list[str]
    decided_at: dt.datetime | None
    decided_by: str | None
    code: str | None


async def _described(conn: Any, rows: list[Row[Any]]) -> list[Explanation]:
    concerned = await store.pupils_of(conn, [r.id for r in rows])
    names = {(urn, p): stored_pupil(record) for urn, p, record in await conn.execute(
        select(pupils.c.school_urn, pupils.c.pupil_id, pupils.c.record)
        .join(explanation_pupils, (explanation_pupils.c.school_urn == pupils.c.school_urn)
              & (explanation_pupils.c.pupil_id == pupils.c.pupil_id))
        .where(explanation_pupils.c.explanation_id.in_([r.id for r in rows])))}
    return [Explanation(
        id=r.id, school_urn=r.school_urn, date=r.date, received_at=r.received_at, text=r.body,
        matched=r.matched, status=ExplanationStatus(r.status), contact_refs=r.contact_refs,
        decided_at=r.decided_at, decided_by=r.decided_by, code=r.code,
        pupils=[ExplanationPupil(pupil_id=p, given_name=names[(r.school_urn, p)].given_name,
                                 family_name=names[(r.school_urn, p)].family_name)
                for p in concerned.get(r.id, []) if (r.school_urn, p) in names],
    ) for r in rows]


@router.get("/schools/{urn}/explanations", response_model=list[Explanation])
async def list_explanations(
    urn: Urn, engine: EngineDep, caller: TimelineReader,
    status: Annotated[Literal["pending", "accepted", "dismissed"] | None, Query()] = None,
) -> list[Explanation]:
    """Newest first; `status` narrows them (the officer's list is `pending`)."""
    ensure_school(caller, urn)
    query = select(explanations).where(explanations.c.school_urn == urn)
    if status is not None:
        query = query.where(explanations.c.status == status)
    async with engine.connect() as conn:
        rows = list((await conn.execute(
            query.order_by(explanations.c.received_at.desc(), explanations.c.id.desc())
            .limit(500))).all())
        return await _described(conn, rows)


async def _pending(conn: Any, urn: str, explanation_id: int) -> Row[Any]:
    row = await store.row_of(conn, urn, explanation_id)
    if row is None:
        raise HTTPException(404, "no such explanation at this school")
    if row.status != ExplanationStatus.PENDING:
        raise HTTPException(409, f"this explanation was already {row.status}")
    return row


def _event_id(explanation_id: int, pupil_id: str, session: str) -> str:
    # Identifiers are at most 64 characters; the same acceptance always makes the same id.
    digest = hashlib.sha256(f"{pupil_id}\0{session}".encode()).hexdigest()[:20]
    return f"explanation-{explanation_id}-{digest}"


@router.post("/schools/{urn}/explanations/{explanation_id}/accept", response_model=Explanation)
async def accept(urn: Urn, explanation_id: ExplanationId, body: Acceptance,
                 service: ServiceDep, clock: ClockDep, caller: MarksWriter) -> Explanation:
    """Re-code every session of the report's day still `N` for the pupils it concerns, with
    `code`, through the normal pipeline; 409 when none is (nothing to re-code yet)."""
    ensure_school(caller, urn)
    now = clock.now()
    async with service.engine.connect() as conn:
        row = await _pending(conn, urn, explanation_id)
        concerned = (await store.pupils_of(conn, [row.id])).get(row.id, [])
        standing = (await conn.execute(
            select(marks.c.pupil_id, marks.c.session).where(
                marks.c.school_urn == urn, marks.c.pupil_id.in_(concerned),
                marks.c.date == row.date, marks.c.code == UNEXPLAINED)
            .order_by(marks.c.pupil_id, marks.c.session))).all()
    if not standing:
        raise HTTPException(409, f"no N mark on {row.date.isoformat()} to re-code yet")
    exchange = service.events_exchange
    if exchange is None:
        raise HTTPException(503, "broker not connected")
    for pupil_id, session in standing:
        event = RegisterMark.model_validate({
            "schema": "register.mark/v1", "event_id": _event_id(row.id, pupil_id, session),
            "school_urn": urn, "pupil_id": pupil_id, "date": row.date, "session": session,
            "code": body.code, "recorded_at": now, "source": store.reply_id(row.id)})
        payload = json.dumps(event.model_dump(mode="json", by_alias=True)).encode()
        await exchange.publish(persistent_message(payload, message_id=event.event_id),
                               routing_key=routing_key(event))
    async with service.engine.begin() as conn:
        if not await store.settle(conn, row.id, ExplanationStatus.ACCEPTED, body.by, now,
                                  code=body.code):
            raise HTTPException(409, "this explanation was settled meanwhile")
        return await _settled(conn, urn, row.id)


async def _settled(conn: Any, urn: str, explanation_id: int) -> Explanation:
    row = await store.row_of(conn, urn, explanation_id)
    assert row is not None  # read earlier in the same request; explanations are not deleted
    return (await _described(conn, [row]))[0]


@router.post("/schools/{urn}/explanations/{explanation_id}/dismiss", response_model=Explanation)
async def dismiss(urn: Urn, explanation_id: ExplanationId, body: Dismissal, engine: EngineDep,
                  clock: ClockDep, caller: MarksWriter) -> Explanation:
    """Not about an absence of ours, or not believed: the family has not been heard after all,
    so what hearing them cancelled comes back (the first-day text at the next send time)."""
    ensure_school(caller, urn)
    now = clock.now()
    async with engine.begin() as conn:
        row = await _pending(conn, urn, explanation_id)
        concerned = (await store.pupils_of(conn, [row.id])).get(row.id, [])
        if not await store.settle(conn, row.id, ExplanationStatus.DISMISSED, body.by, now):
            raise HTTPException(409, "this explanation was settled meanwhile")
        await store.undo_hearing(conn, row, concerned, now)
        return await _settled(conn, urn, row.id)
