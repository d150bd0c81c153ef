"""Applying validated events to storage and to the rules, a batch per transaction."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from broker_messages.codes import LEGACY_CODES, canonical_code
from broker_messages.events import EVENT_ADAPTER, PupilRemoved, RegisterMark
from servicekit.clock import Clock, local_date
from servicekit.database import bulk_execute, bulk_insert, dialect_insert
from sqlalchemy import Insert, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triage import counters, history
from triage import decisions as decision_store
from triage.evaluation import Evaluator
from triage.history import rows_for_keys
from triage.models import marks, parked_events, pupils, received_events
from triage.schools import SchoolContext, SchoolContextCache

log = logging.getLogger(__name__)

Event = RegisterMark | PupilRemoved
PupilKey = tuple[str, str]
MarkKey = tuple[str, str, dt.date, str]


RECEIVED_COLUMNS = ("event_id", "kind", "school_urn", "pupil_id", "payload", "received_at")
MARK_COLUMNS = ("school_urn", "pupil_id", "date", "session", "code", "recorded_at", "event_id")


@dataclass(frozen=True)
class Outcome:
    status: Literal["applied", "duplicate", "parked", "rejected"]
    reason: str | None = None


class Ingestor:
    def __init__(self, engine: AsyncEngine, clock: Clock, schools: SchoolContextCache,
                 on_cancelled: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._clock = clock
        self._schools = schools
        # Called after a commit that queued cancellations for the notifier (wakes the relay).
        self._on_cancelled = on_cancelled
        self._told = 0

    async def apply(self, events: list[Event]) -> list[Outcome]:
        """Apply a batch in one transaction; outcomes line up with `events`."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            contexts = await self._schools.load(conn, {e.school_urn for e in events})
            outcomes: list[Outcome | None] = [None] * len(events)
            candidates: dict[str, int] = {}
            for index, event in enumerate(events):
                reason = rejection(event, contexts.get(event.school_urn), now)
                if reason:
                    outcomes[index] = Outcome("rejected", reason)
                elif event.event_id in candidates:
                    outcomes[index] = _repeated(event, _content(events[candidates[event.event_id]]))
                else:
                    candidates[event.event_id] = index
            fresh = await _record_new(conn, [events[i] for i in candidates.values()], now)
            seen_before = await _stored_contents(
                conn, [event_id for event_id in candidates if event_id not in fresh])
            new_events = []
            for event_id, index in candidates.items():
                if event_id in fresh:
                    new_events.append(events[index])
                else:
                    outcomes[index] = _repeated(events[index], seen_before.get(event_id))
            parked = await self._apply_new(conn, new_events, contexts, now)
            for event_id, index in candidates.items():
                if outcomes[index] is None:
                    outcomes[index] = Outcome("parked" if event_id in parked else "applied")
        self._committed()
        return [outcome or Outcome("applied") for outcome in outcomes]

    def _committed(self) -> None:
        if self._told:
            self._told = 0
            self._on_cancelled()

    async def forecast(self, events: list[Event]) -> list[Outcome]:
        """What the consumer will do with each event, judged now: `rejection`, an `event_id`
        already used for other content, or parking for a pupil the roster does not name
        (docs/contract.md §2 "HTTP ingest" answers item by item with this)."""
        async with self._engine.connect() as conn:
            contexts = await self._schools.load(conn, {e.school_urn for e in events})
            stored = await _stored_contents(conn, [e.event_id for e in events])
            known = await history.known_pupils(conn, {(e.school_urn, e.pupil_id) for e in events})
        now = self._clock.now()
        outcomes = []
        for event in events:
            reason = rejection(event, contexts.get(event.school_urn), now)
            if reason is not None:
                outcome = Outcome("rejected", reason)
            elif event.event_id in stored and (
                    repeat := _repeated(event, stored[event.event_id])).status == "rejected":
                outcome = repeat
            elif (event.school_urn, event.pupil_id) not in known:
                outcome = Outcome("parked", UNKNOWN_PUPIL)
            else:
                outcome = Outcome("applied")
            outcomes.append(outcome)
        return outcomes

    async def unpark(self, school_urn: str) -> int:
        """Apply events that were waiting for pupils the roster now names."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(parked_events.c.event_id, parked_events.c.payload)
                    .join(
                        pupils,
                        (pupils.c.school_urn == parked_events.c.school_urn)
                        & (pupils.c.pupil_id == parked_events.c.pupil_id),
                    )
                    .where(parked_events.c.school_urn == school_urn)
                    .order_by(parked_events.c.parked_at)
                )
            ).all()
            if not rows:
                return 0
            await conn.execute(
                delete(parked_events).where(parked_events.c.event_id.in_([r[0] for r in rows]))
            )
            events = [EVENT_ADAPTER.validate_python(row.payload) for row in rows]
            contexts = await self._schools.load(conn, {school_urn})
            await self._apply_new(conn, events, contexts, now)
        self._committed()
        log.info("triage.events.unparked school_urn=%s count=%d", school_urn, len(rows))
        return len(rows)

    async def _apply_new(
        self,
        conn: AsyncConnection,
        events: list[Event],
        contexts: dict[str, SchoolContext],
        now: dt.datetime,
    ) -> set[str]:
        """Store first-seen events and run the rules; returns the ids that had to be parked."""
        if not events:
            return set()
        # The roster records the rules need, read once: whether each pupil is known at all
        # decides parking, and the records themselves feed the rules.
        records = await history.roster_records_many(
            conn, {(e.school_urn, e.pupil_id) for e in events})
        parked = [e for e in events if (e.school_urn, e.pupil_id) not in records]
        if parked:
            await conn.execute(
                dialect_insert(conn.engine)(parked_events).on_conflict_do_nothing(),
                [
                    {
                        "event_id": e.event_id,
                        "school_urn": e.school_urn,
                        "pupil_id": e.pupil_id,
                        "payload": e.model_dump(mode="json", by_alias=True),
                        "parked_at": now,
                    }
                    for e in parked
                ],
            )
            for e in parked:
                log.info("triage.event.parked event_id=%s school_urn=%s pupil_id=%s",
                         e.event_id, e.school_urn, e.pupil_id)
        known = [e for e in events if (e.school_urn, e.pupil_id) in records]
        register_marks = [e for e in known if isinstance(e, RegisterMark)]
        removals = [e for e in known if isinstance(e, PupilRemoved)]
        await _store_marks(conn, register_marks, now)
        for removal in removals:
            await _remove_pupil(conn, removal, now)
            key = (removal.school_urn, removal.pupil_id)
            records[key] = (records[key][0], False)
        self._told += await Evaluator(conn, contexts, records, now).run(register_marks, removals)
        return {e.event_id for e in parked}


def rejection(event: Event, context: SchoolContext | None, now: dt.datetime) -> str | None:
    """Why the event cannot be applied, or None. The HTTP ingest asks the same question
    (`Ingestor.forecast`), so an item it accepts is one the consumer will apply.

    A mark dated long ago is not refused: it updates the pupil's record and the rates and
    contacts nobody (docs/rules.md "Stale marks"); only a date outside the school's uploaded
    terms, or before 2000 (the schema), is."""
    # "kind: detail": the metrics label a rejection by the part before the colon, so the data
    # (URNs, dates) stays out of the label and the series stay bounded.
    if context is None:
        return f"unknown school_urn: {event.school_urn}"
    if event.date > local_date(now, context.tz):
        return f"date in the future: {event.date.isoformat()}"
    if isinstance(event, RegisterMark):
        if event.recorded_at > now + dt.timedelta(hours=1):
            return "recorded_at is in the future"
        # docs/rules.md "Only school days count": never a possible session, never a contact.
        if (why := context.calendar.why_not_a_school_day(event.date)) is not None:
            return f"not a school day: {why}"
    return None


REUSED_EVENT_ID = "event_id reused"
UNKNOWN_PUPIL = "unknown pupil: not on the school's roster"


def _content(event: Event) -> dict[str, object]:
    return event.model_dump(mode="json", by_alias=True)


def _repeated(event: Event, first: object) -> Outcome:
    """An event whose id was seen before: a harmless duplicate when its content is the same;
    refused (and dead-lettered with the reason) when it is not, because one of the two is
    not what its sender meant and silently keeping the first would hide that. HTTP ingest
    sets a missing `source` to `api`, so that field is compared only when both have one."""
    content = _content(event)
    if isinstance(first, dict):
        if first.get("source") is None or content.get("source") is None:
            first = {**first, "source": None}
            content = {**content, "source": None}
        if first == content:
            return Outcome("duplicate")
    elif first is None:
        return Outcome("duplicate")
    return Outcome("rejected",
                   f"{REUSED_EVENT_ID}: {event.event_id} was received before with other content")


async def _stored_contents(conn: AsyncConnection, event_ids: list[str]) -> dict[str, object]:
    """What the deduplication log holds for these ids (a repeat is compared against it)."""
    if not event_ids:
        return {}
    rows = await conn.execute(_STORED, {"ids": sorted(set(event_ids))})
    return {row.event_id: row.payload for row in rows}


async def _record_new(conn: AsyncConnection, events: list[Event], now: dt.datetime) -> set[str]:
    """Insert into the deduplication log; returns the event ids seen for the first time."""
    if not events:
        return set()
    rows = [
        {
            "event_id": e.event_id,
            "kind": e.schema_,
            "school_urn": e.school_urn,
            "pupil_id": e.pupil_id,
            "payload": e.model_dump_json(by_alias=True),
            "received_at": now,
        }
        for e in events
    ]
    if conn.dialect.name == "postgresql":
        fresh = await bulk_execute(conn, _record_statement(conn.dialect.name), received_events,
                                   RECEIVED_COLUMNS, rows)
        return set(fresh.scalars().all())
    # SQLite returns no rows from a bulk insert: read which ids are stored already, then
    # insert the others. Nothing can come between: a second writer's commit since this read
    # fails our write as a stale snapshot (SQLITE_BUSY), and the batch is retried.
    seen = set((await conn.execute(_SEEN, {"ids": [e.event_id for e in events]})).scalars())
    rows = [row for row in rows if row["event_id"] not in seen]
    if rows:
        await bulk_execute(conn, _record_statement(conn.dialect.name), received_events,
                           RECEIVED_COLUMNS, rows)
    return {str(row["event_id"]) for row in rows}


# Each statement of a batch is built once (per dialect) and used again: one statement for
# the whole batch (`bulk_insert`), rather than a multi-row VALUES compiled, and prepared by
# the driver, afresh for every batch size; and the same object each time, which spares
# SQLAlchemy its per-execution cache key and result matching (see `history.pupil_rows`).
@functools.cache
def _record_statement(dialect_name: str) -> Insert:
    statement = bulk_insert(dialect_name, received_events, RECEIVED_COLUMNS)
    if dialect_name != "postgresql":
        return statement  # type: ignore[no-any-return]  # ids checked first (no RETURNING)
    return statement.on_conflict_do_nothing().returning(  # type: ignore[no-any-return]
        received_events.c.event_id)


_STORED = select(received_events.c.event_id, received_events.c.payload).where(
    received_events.c.event_id.in_(bindparam("ids", expanding=True)))
_SEEN = select(received_events.c.event_id).where(
    received_events.c.event_id.in_(bindparam("ids", expanding=True)))


@functools.cache
def _marks_upsert(dialect_name: str) -> Insert:
    statement = bulk_insert(dialect_name, marks, MARK_COLUMNS)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[marks.c.school_urn, marks.c.pupil_id, marks.c.date, marks.c.session],
        set_={
            "code": statement.excluded.code,
            "recorded_at": statement.excluded.recorded_at,
            "event_id": statement.excluded.event_id,
        },
        where=marks.c.recorded_at < statement.excluded.recorded_at,
    )


async def _store_marks(conn: AsyncConnection, register_marks: list[RegisterMark],
                       now: dt.datetime) -> None:
    """Contract §2: the latest `recorded_at` wins whatever the arrival order. The rate counters
    (docs/rules.md "Rates") move by the difference between each replaced code and its replacement, in the
    same transaction; the previous codes of the whole batch are read in one query."""
    latest: dict[MarkKey, RegisterMark] = {}
    for mark in register_marks:
        if mark.code in LEGACY_CODES:
            log.warning("triage.mark.legacy_code event_id=%s code=%s stored_as=%s",
                        mark.event_id, mark.code, canonical_code(mark.code))
        key = (mark.school_urn, mark.pupil_id, mark.date, mark.session)
        if key not in latest or latest[key].recorded_at < mark.recorded_at:
            latest[key] = mark
    if not latest:
        return
    await _lock_pupils(conn, {(key[0], key[1]) for key in latest})
    previous = await _current_marks(conn, list(latest))
    winners = {
        key: mark for key, mark in latest.items()
        if key not in previous or previous[key][1] < mark.recorded_at
    }
    if not winners:
        return  # every mark was older than what we hold: recorded, changes nothing
    await bulk_execute(conn, _marks_upsert(conn.dialect.name), marks, MARK_COLUMNS, [
        {
            "school_urn": m.school_urn,
            "pupil_id": m.pupil_id,
            "date": m.date,
            "session": m.session,
            "code": canonical_code(m.code),
            "recorded_at": m.recorded_at,
            "event_id": m.event_id,
        }
        for m in winners.values()
    ])
    changes = [
        (key, previous[key][0] if key in previous else None, canonical_code(mark.code))
        for key, mark in winners.items()
    ]
    await counters.apply_changes(conn, changes, now)


async def _lock_pupils(conn: AsyncConnection, keys: set[PupilKey]) -> None:
    """Replicas on PostgreSQL take turns per pupil for the rest of the transaction: reading a
    pupil's current marks and moving their counters must not interleave with another batch
    for the same pupil. Locks are taken in one sorted order, so they cannot deadlock."""
    if conn.dialect.name != "postgresql":
        return  # SQLite has one writer at a time, and a stale read fails and is retried
    ids = sorted({zlib.crc32(f"{urn}/{pupil_id}".encode()) for urn, pupil_id in keys})
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) AS k"),
        {"ids": ids},
    )


async def _current_marks(
    conn: AsyncConnection, keys: list[MarkKey]
) -> dict[MarkKey, tuple[str, dt.datetime]]:
    """The stored code and `recorded_at` of these marks: the batch's pupils on the batch's
    dates (usually one), narrowed to the exact keys here."""
    wanted = set(keys)
    rows = await rows_for_keys(
        conn, marks, ("school_urn", "pupil_id", "date", "session", "code", "recorded_at"),
        "date", wanted)
    found: dict[MarkKey, tuple[str, dt.datetime]] = {}
    for urn, pupil_id, day, session, code, recorded_at in rows:
        if (urn, pupil_id, day, session) in wanted:
            found[(urn, pupil_id, day, session)] = (code, recorded_at)
    return found


async def _remove_pupil(conn: AsyncConnection, removal: PupilRemoved, now: dt.datetime) -> None:
    await conn.execute(
        update(pupils)
        .where(pupils.c.school_urn == removal.school_urn, pupils.c.pupil_id == removal.pupil_id)
        .values(on_roll=False, removed_on=removal.date, updated_at=now)
    )
    await decision_store.cancel_pending_for_pupil(
        conn, removal.school_urn, removal.pupil_id, "pupil removed from the register", now
    )
