"""`GET /api/v1/schools/{urn}/parked`: the events waiting for pupils the school's roster does
not name (docs/contract.md §3). A school office sees which pupils its roster is missing, and
by when an upload must name them before their marks are discarded (TRIAGE_PARKED_EVENT_DAYS,
triage.housekeeping). Ids, dates and sessions: what the office needs to mend the roster; the
marks' codes and comments are not repeated here."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import bindparam, select

from triage.deps import EngineDep, ParkedDaysDep, SchoolsDep, TimelineReader
from triage.models import parked_events
from triage.rules.parked_marks_expiring import discard_on

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])

_PARKED = (select(parked_events.c.event_id, parked_events.c.pupil_id, parked_events.c.payload,
                  parked_events.c.parked_at)
           .where(parked_events.c.school_urn == bindparam("urn"))
           .order_by(parked_events.c.parked_at, parked_events.c.event_id))


class Parked(BaseModel):
    event_id: str
    schema_: Literal["register.mark/v1", "pupil.removed/v1"] = Field(alias="schema")
    pupil_id: str
    date: dt.date
    # None for a `pupil.removed` event.
    session: Literal["AM", "PM"] | None
    parked_at: dt.datetime
    discard_on: dt.date


@router.get("/schools/{urn}/parked", response_model=list[Parked])
async def parked(urn: Annotated[str, Path(pattern=r"^[0-9]{6,8}$")], engine: EngineDep,
                 cache: SchoolsDep, parked_days: ParkedDaysDep,
                 caller: TimelineReader) -> Any:
    """Oldest first; empty when every event's pupil is on the roster."""
    ensure_school(caller, urn)
    async with engine.connect() as conn:
        context = (await cache.load(conn, [urn])).get(urn)
        if context is None:
            raise HTTPException(404, "no such school")
        rows = (await conn.execute(_PARKED, {"urn": urn})).all()
    return [{"event_id": row.event_id, "schema": row.payload["schema"],
             "pupil_id": row.pupil_id, "date": row.payload["date"],
             "session": row.payload.get("session"), "parked_at": row.parked_at,
             "discard_on": discard_on(row.parked_at, parked_days, context.tz)}
            for row in rows]
