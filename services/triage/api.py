"""Triage's admin API (docs/contract.md §2 HTTP ingest, §3 roster, policy and tasks)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from broker_messages.events import EVENT_ADAPTER, Event, RegisterMark, routing_key
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from servicekit.broker import persistent_message
from servicekit.clock import LONDON
from servicekit.keys import Principal
from servicekit.openapi import request_body
from servicekit.requests import read_json, validation_problems
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triage import tasks as task_store
from triage.deps import (
    ClockDep,
    EngineDep,
    IngestorDep,
    MarksWriter,
    ParkedDaysDep,
    SchoolsDep,
    SchoolsWriter,
    ServiceDep,
    TasksReader,
    TasksWriter,
)
from triage.ingest import UNKNOWN_PUPIL, Ingestor
from triage.models import pupils, tasks
from triage.rules.parked_marks_expiring import discard_on
from triage.school_document import (
    Pupil,
    SchoolDocument,
    duplicate_pupil_problems,
    in_words,
    without_usable_contact,
)
from triage.schools import (
    RosterWouldShrink,
    SchoolContextCache,
    pupil_record,
    store_pupil,
    store_school,
    stored_document,
    take_off_roll,
)

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])
MAX_BATCH = 1000
# What `POST /events` reads: one event, or an array of them.
_EVENTS_BODY: TypeAdapter[Any] = TypeAdapter(
    Event | Annotated[list[Event], Field(max_length=MAX_BATCH)])


SchoolUrn = Annotated[str, Path(pattern=r"^[0-9]{6,8}$")]
# As an event's `pupil_id` (broker_messages/events.py `Identifier`).
PupilId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


@router.get("/schools/{urn}")
async def get_school(urn: SchoolUrn, engine: EngineDep, caller: SchoolsWriter) -> dict[str, Any]:
    """The school document as stored, with the pupils on roll: what a `PUT` would send."""
    ensure_school(caller, urn)
    async with engine.connect() as conn:
        document = await stored_document(conn, urn)
    if document is None:
        raise HTTPException(404, "no such school")
    return document


@router.put("/schools/{urn}", openapi_extra=request_body(TypeAdapter(SchoolDocument)))
async def put_school(urn: str, request: Request, engine: EngineDep, clock: ClockDep,
                     ingestor: IngestorDep, caller: SchoolsWriter,
                     allow_removals: bool = False) -> dict[str, Any]:
    """Create or replace a school, its calendar, staff, policy and roster in one document."""
    ensure_school(caller, urn)
    raw = await read_json(request)
    problems = duplicate_pupil_problems(raw)
    document: SchoolDocument | None = None
    try:
        document = SchoolDocument.model_validate(raw)
    except ValidationError as error:
        problems = validation_problems(error, ["body"]) + problems
    # Checked on the raw body so a mismatch is listed with every other problem (docs/contract.md §3).
    document_urn = raw.get("urn") if isinstance(raw, dict) else None
    if isinstance(document_urn, str) and document_urn.strip() != urn:
        problems.append({"loc": ["path", "urn"], "msg": "does not match the document's urn",
                         "type": "mismatch"})
    if problems or document is None:
        raise HTTPException(422, in_words(problems, raw))
    try:
        async with engine.begin() as conn:
            counts = await store_school(conn, document, clock.now(),
                                        allow_removals=allow_removals)
    except RosterWouldShrink as refused:
        raise HTTPException(409, _shrink_refusal(refused)) from None
    counts["unparked"] = await ingestor.unpark(urn)
    # Uploaded as they are, but said out loud: an absence of theirs reaches no family, only
    # the attendance officer (docs/rules.md "family_unreachable").
    return {"urn": urn, **counts, "no_usable_contact": without_usable_contact(document.pupils)}


def _shrink_refusal(refused: RosterWouldShrink) -> dict[str, Any]:
    count = len(refused.leavers)
    named = ", ".join(p["id"] for p in refused.leavers[:20]) + (" …" if count > 20 else "")
    return {"msg": f"this upload would take {count} of the {refused.on_roll} pupils on roll "
                   f"off roll ({named}); an upload may not empty a roster or remove more than "
                   "half of it unless it says ?allow_removals=true",
            "type": "too_many_removals", "leavers": refused.leavers}


@router.put("/schools/{urn}/pupils/{pupil_id}", openapi_extra=request_body(TypeAdapter(Pupil)))
async def put_pupil(urn: SchoolUrn, pupil_id: PupilId, request: Request, engine: EngineDep,
                    clock: ClockDep, ingestor: IngestorDep,
                    caller: SchoolsWriter) -> dict[str, Any]:
    """Create or replace one pupil's record (back on roll if they had left)."""
    ensure_school(caller, urn)
    raw = await read_json(request)
    async with engine.begin() as conn:
        found = await _school_pupil(conn, urn, pupil_id)
        pupil = _valid_pupil(raw, pupil_id)
        await store_pupil(conn, urn, pupil, clock.now())
    return await _pupil_stored(urn, pupil, found is None or not found[1], ingestor)


@router.patch("/schools/{urn}/pupils/{pupil_id}")
async def patch_pupil(urn: SchoolUrn, pupil_id: PupilId, request: Request, engine: EngineDep,
                      clock: ClockDep, ingestor: IngestorDep,
                      caller: SchoolsWriter) -> dict[str, Any]:
    """Change some fields of a pupil on roll; a field given replaces it whole (`contacts` is
    the whole list), `null` clears an optional one."""
    ensure_school(caller, urn)
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise HTTPException(422, [{"loc": ["body"], "type": "dict_type",
                                   "msg": f"pupil {pupil_id}: give the fields to change"}])
    async with engine.begin() as conn:
        found = await _school_pupil(conn, urn, pupil_id)
        if found is None or not found[1]:
            raise HTTPException(404, f"pupil {pupil_id} is not on this school's roll")
        pupil = _valid_pupil({**found[0], **raw}, pupil_id)
        await store_pupil(conn, urn, pupil, clock.now())
    return await _pupil_stored(urn, pupil, False, ingestor)


@router.delete("/schools/{urn}/pupils/{pupil_id}")
async def delete_pupil(urn: SchoolUrn, pupil_id: PupilId, engine: EngineDep, clock: ClockDep,
                       caller: SchoolsWriter) -> dict[str, Any]:
    """Take one pupil off roll, their history kept."""
    ensure_school(caller, urn)
    async with engine.begin() as conn:
        found = await _school_pupil(conn, urn, pupil_id)
        if found is None or not await take_off_roll(conn, urn, pupil_id, clock.now()):
            raise HTTPException(404, f"pupil {pupil_id} is not on this school's roll")
    record = found[0]
    return {"urn": urn, "leavers": [{"id": pupil_id, "given_name": record["given_name"],
                                     "family_name": record["family_name"]}]}


async def _school_pupil(conn: AsyncConnection, urn: str,
                        pupil_id: str) -> tuple[dict[str, Any], bool] | None:
    """The pupil's record and whether on roll; 404 when the school is not known."""
    if await stored_document(conn, urn) is None:
        raise HTTPException(404, "no such school")
    return await pupil_record(conn, urn, pupil_id)


def _valid_pupil(raw: Any, pupil_id: str) -> Pupil:
    problems: list[dict[str, Any]] = []
    if isinstance(raw, dict) and raw.get("id", pupil_id) != pupil_id:
        problems.append({"loc": ["body", "id"], "msg": "does not match the pupil id in the path",
                         "type": "mismatch"})
    try:
        pupil = Pupil.model_validate({**raw, "id": pupil_id} if isinstance(raw, dict) else raw)
    except ValidationError as error:
        problems = validation_problems(error, ["body"]) + problems
    if problems:
        raise HTTPException(422, in_words(problems, raw, pupil_id))
    return pupil


async def _pupil_stored(urn: str, pupil: Pupil, joined: bool,
                        ingestor: Ingestor) -> dict[str, Any]:
    unparked = await ingestor.unpark(urn)
    return {"urn": urn, "pupil": pupil.model_dump(mode="json"), "joined": joined,
            "unparked": unparked, "no_usable_contact": without_usable_contact([pupil])}


# Which field a consumer rejection is about (the part of its reason before the colon).
_REJECTED_FIELD = {"unknown school_urn": "school_urn", "recorded_at is in the future": "recorded_at",
                   "event_id reused": "event_id"}


# A school office's MIS export and roster upload race: the item is kept, and said so.
_PARKED_REASON = (f"{UNKNOWN_PUPIL}; applied when a roster upload (PUT /api/v1/schools/{{urn}}) "
                  "names the pupil, discarded on discard_on otherwise")


async def _school_zones(engine: AsyncEngine, cache: SchoolContextCache,
                        urns: set[str]) -> dict[str, ZoneInfo]:
    """Each school's time zone (discard days are school-local); no query when none asked."""
    if not urns:
        return {}
    async with engine.connect() as conn:
        contexts = await cache.load(conn, urns)
    return {urn: contexts[urn].tz if urn in contexts else LONDON for urn in urns}


class ParkedEvent(BaseModel):
    """An item kept, not applied: its pupil is not on the school's roster (yet)."""

    event_id: str
    pupil_id: str
    reason: str
    # When no roster upload has named the pupil by then (TRIAGE_PARKED_EVENT_DAYS).
    discard_on: dt.date


class EventsAccepted(BaseModel):
    accepted: list[str]
    parked: list[ParkedEvent] = []


@router.post("/events", status_code=202, response_model=EventsAccepted,
             openapi_extra=request_body(_EVENTS_BODY))
async def post_events(request: Request, service: ServiceDep, engine: EngineDep,
                      cache: SchoolsDep, parked_days: ParkedDaysDep,
                      caller: MarksWriter) -> Any:
    """HTTP ingest: one event or an array of up to 1,000, published with confirms. Each item
    is answered as the consumer will treat it (docs/contract.md §2 "HTTP ingest"): accepted
    (will be applied), parked (its pupil is not on the roster) or refused with the reason."""
    raw = await read_json(request)
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_BATCH:
        raise HTTPException(422, [{"loc": ["body"], "msg": f"at most {MAX_BATCH} events",
                                   "type": "too_long"}])
    problems: list[dict[str, Any]] = []
    valid = []
    for index, item in enumerate(items):
        prefix: list[str | int] = ["body", index] if isinstance(raw, list) else ["body"]
        try:
            event = EVENT_ADAPTER.validate_python(item)
        except ValidationError as error:
            problems.extend(validation_problems(error, prefix))
            continue
        # docs/security.md: an event for a school the key does not serve is refused alone.
        if not caller.serves(event.school_urn):
            problems.append({"loc": [*prefix, "school_urn"], "type": "forbidden",
                             "msg": "this key does not serve this school"})
            continue
        valid.append((prefix, event))
    outcomes = await service.ingestor.forecast([event for _, event in valid])
    exchange = service.events_exchange
    if exchange is None:
        raise HTTPException(503, "broker not connected")
    now = service.clock.now()
    zones = await _school_zones(engine, cache, {
        event.school_urn for (_, event), outcome in zip(valid, outcomes, strict=True)
        if outcome.status == "parked"})
    accepted: list[str] = []
    parked: list[ParkedEvent] = []
    publishes = []
    for (prefix, event), outcome in zip(valid, outcomes, strict=True):
        if outcome.status == "rejected":
            reason = outcome.reason or ""
            problems.append({"loc": [*prefix, _REJECTED_FIELD.get(reason.split(":")[0], "date")],
                             "msg": reason, "type": "rejected"})
            continue
        if isinstance(event, RegisterMark) and event.source is None:
            event = event.model_copy(update={"source": "api"})
        body = json.dumps(event.model_dump(mode="json", by_alias=True)).encode()
        publishes.append(exchange.publish(persistent_message(body, message_id=event.event_id),
                                          routing_key=routing_key(event)))
        if outcome.status == "parked":
            parked.append(ParkedEvent(
                event_id=event.event_id, pupil_id=event.pupil_id, reason=_PARKED_REASON,
                discard_on=discard_on(now, parked_days, zones[event.school_urn])))
        else:
            accepted.append(event.event_id)
    # Published together, each still confirmed by the broker before the answer: one round
    # trip per batch instead of one per event (a 1,000-event import batch waited on 1,000).
    await asyncio.gather(*publishes)
    answer = EventsAccepted(accepted=accepted, parked=parked)
    if problems:
        return JSONResponse({**answer.model_dump(mode="json"), "detail": problems},
                            status_code=422)
    return answer


class Task(BaseModel):
    id: int
    kind: str
    school_urn: str
    pupil_id: str
    given_name: str | None
    family_name: str | None
    episode_start: dt.date
    status: str
    assignee: str | None
    detail: str | None
    due_at: dt.datetime | None
    outcome: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class TaskOutcome(BaseModel):
    """The old body (`outcome` only) still works; `result` alone is enough too."""

    model_config = ConfigDict(extra="forbid")

    outcome: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    result: task_store.Result | None = None

    @model_validator(mode="after")
    def _something_said(self) -> TaskOutcome:
        if self.outcome is None and self.result is None:
            raise ValueError("give an outcome, a result or both")
        return self


class TaskAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: Annotated[str, Field(min_length=1, max_length=200)]


# Task rows with the pupil's names (one join, for the staff lists).
_TASKS = select(
    tasks, pupils.c.record["given_name"].as_string().label("given_name"),
    pupils.c.record["family_name"].as_string().label("family_name"),
).select_from(tasks.outerjoin(pupils, (pupils.c.school_urn == tasks.c.school_urn)
                              & (pupils.c.pupil_id == tasks.c.pupil_id)))


@router.get("/tasks", response_model=list[Task])
async def list_tasks(
    engine: EngineDep,
    caller: TasksReader,
    school_urn: Annotated[str, Query(pattern=r"^[0-9]{6,8}$")],
    status: Literal["open", "done", "cancelled"] | None = None,
    kind: Annotated[str, Query(pattern=r"^[a-z0-9_]{1,32}$")] | None = None,
) -> Any:
    ensure_school(caller, school_urn)
    query = _TASKS.where(tasks.c.school_urn == school_urn).order_by(tasks.c.id)
    if status:
        query = query.where(tasks.c.status == status)
    if kind:
        query = query.where(tasks.c.kind == kind)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def _task_of_caller(conn: AsyncConnection, task_id: int, caller: Principal) -> Row[Any]:
    row = (await conn.execute(_TASKS.where(tasks.c.id == task_id))).first()
    # Another school's task is answered as one that does not exist: its id says nothing.
    if row is None or not caller.serves(row.school_urn):
        raise HTTPException(404, "no such task")
    if row.status != "open":
        raise HTTPException(409, f"task is already {row.status}")
    return row


TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/tasks/{task_id}/complete", response_model=Task)
async def complete_task(task_id: TaskId, body: TaskOutcome, engine: EngineDep, clock: ClockDep,
                        caller: TasksWriter) -> Any:
    """Close an open task; `result: "concern"` also opens a `dsl_escalation` task."""
    async with engine.begin() as conn:
        row = await _task_of_caller(conn, task_id, caller)
        if not await task_store.complete(conn, row, body.outcome, body.result, clock.now()):
            raise HTTPException(409, "task is no longer open")
        row = (await conn.execute(_TASKS.where(tasks.c.id == task_id))).one()
    return dict(row._mapping)


@router.post("/tasks/{task_id}/assign", response_model=Task)
async def assign_task(task_id: TaskId, body: TaskAssignment, engine: EngineDep, clock: ClockDep,
                      caller: TasksWriter) -> Any:
    """Give an open task to a member of staff (a staff reference, e.g. the web app's user)."""
    async with engine.begin() as conn:
        await _task_of_caller(conn, task_id, caller)
        if not await task_store.assign(conn, task_id, body.assignee, clock.now()):
            raise HTTPException(409, "task is no longer open")
        row = (await conn.execute(_TASKS.where(tasks.c.id == task_id))).one()
    return dict(row._mapping)
