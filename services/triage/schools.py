"""Schools and their rosters in storage: upload, and the parsed view the rules need."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from broker_messages.contact import DeliveryWindow, Recipient, RecipientRole, School
from servicekit.database import dialect_insert
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.calendar import SchoolCalendar
from triage.models import pupils, schools
from triage.policy import Policy
from triage.school_document import Pupil, SchoolDocument, stored_pupil

_CHUNK = 500  # rows per INSERT: stays well inside SQLite's bound-parameter limit


@dataclass(frozen=True)
class SchoolContext:
    urn: str
    name: str
    phone: str | None
    tz: ZoneInfo
    calendar: SchoolCalendar
    policy: Policy
    document: dict[str, Any]
    # Roster records typed once per upload: the context is rebuilt whenever the school is
    # stored again (`SchoolContextCache`), and only `store_school` writes a record. Validating
    # every record of every batch again cost triage a fifth of its rate (`make bench`).
    _typed: dict[str, Pupil] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def pupil(self, record: dict[str, Any]) -> Pupil:
        """A stored roster record of this school, typed."""
        typed = self._typed.get(record["id"])
        if typed is None:
            typed = self._typed[record["id"]] = stored_pupil(record)
        return typed

    def delivery_window(self, day: dt.date, days_ahead: int = 15) -> DeliveryWindow:
        """The school days from `day` on, for the notifier's quiet-hours and school-day hold."""
        return DeliveryWindow(
            timezone=str(self.tz),
            quiet_hours=self.policy.quiet_hours,
            school_days=self.calendar.school_days_from(day, days_ahead),
        )

    def staff_recipients(self, role: RecipientRole) -> list[Recipient]:
        """Staff with `role`, contacted by email (professional messages)."""
        return [
            Recipient(role=role, ref=f"{self.urn}/staff/{role}/{index}", name=member["name"],
                      email=member["email"], phone=member.get("phone"), channels=("email",))
            for index, member in enumerate(self.document.get("staff") or [])
            if member.get("role") == role and member.get("email")
        ]

    @property
    def school(self) -> School:
        return School(urn=self.urn, name=self.name, phone=self.phone, timezone=str(self.tz))


# Built once: each batch checks its schools (see `history.pupil_rows`).
_STAMPS = select(schools.c.urn, schools.c.updated_at).where(
    schools.c.urn.in_(bindparam("urns", expanding=True)))
_DOCUMENTS = select(schools.c.urn, schools.c.document, schools.c.updated_at).where(
    schools.c.urn.in_(bindparam("urns", expanding=True)))


class SchoolContextCache:
    """Parsing a calendar and policy per event would dominate a busy morning: keep the parsed
    view per school, keyed by the upload's timestamp so a new upload is seen at once."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[dt.datetime, SchoolContext]] = {}

    async def load(self, conn: AsyncConnection, urns: Iterable[str]) -> dict[str, SchoolContext]:
        wanted = set(urns)
        if not wanted:
            return {}
        stamps = (await conn.execute(_STAMPS, {"urns": sorted(wanted)})).all()
        stale = [urn for urn, stamp in stamps if self._cache.get(urn, (None,))[0] != stamp]
        if stale:
            rows = (await conn.execute(_DOCUMENTS, {"urns": stale})).all()
            for urn, document, stamp in rows:
                self._cache[urn] = (stamp, context_of(document))
        return {urn: self._cache[urn][1] for urn, _ in stamps}


def context_of(document: dict[str, Any]) -> SchoolContext:
    """The parsed view of a stored school document."""
    return SchoolContext(
        urn=document["urn"],
        name=document["name"],
        phone=document.get("phone"),
        tz=ZoneInfo(document.get("timezone") or "Europe/London"),
        calendar=SchoolCalendar.from_document(document["calendar"],
                                              document.get("country") or "england"),
        policy=Policy.model_validate(document.get("policy") or {}),
        document=document,
    )


class RosterWouldShrink(Exception):
    """An upload that would empty the roster or take more than half of it off roll, without
    `allow_removals` (docs/contract.md §3): usually a partial export, not a school emptying."""

    def __init__(self, leavers: list[dict[str, str]], on_roll: int) -> None:
        super().__init__(f"{len(leavers)} of {on_roll} pupils would leave the roll")
        self.leavers = leavers
        self.on_roll = on_roll


def too_many_leave(leaving: int, on_roll: int, staying: int) -> bool:
    """Emptying a roster, or more than half of it leaving in one upload."""
    return leaving > 0 and (staying == 0 or 2 * leaving > on_roll)


def _who(record: dict[str, Any]) -> dict[str, str]:
    return {"id": record["id"], "given_name": record["given_name"],
            "family_name": record["family_name"]}


async def _on_roll_records(conn: AsyncConnection, urn: str) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(select(pupils.c.pupil_id, pupils.c.record).where(
        pupils.c.school_urn == urn, pupils.c.on_roll.is_(True)))
    return {pupil_id: record for pupil_id, record in rows}


async def _touch(conn: AsyncConnection, urn: str, now: dt.datetime) -> None:
    """Move the school's stamp on, so every process's `SchoolContextCache` (and the typed
    records it holds) sees the change. Strictly later than the last stamp: two changes in the
    same instant (a frozen clock, a coarse one) must still be told apart."""
    last = await conn.scalar(select(schools.c.updated_at).where(schools.c.urn == urn))
    stamp = now if last is None or _aware(last) < now else _aware(last) + dt.timedelta(
        microseconds=1)
    await conn.execute(update(schools).where(schools.c.urn == urn).values(updated_at=stamp))


def _aware(stamp: dt.datetime) -> dt.datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


async def store_school(
    conn: AsyncConnection, document: SchoolDocument, now: dt.datetime, *,
    allow_removals: bool = False,
) -> dict[str, Any]:
    """Create or replace a school and its roster. Pupils missing from the upload are marked as
    left, their history kept (docs/contract.md §3); `RosterWouldShrink` when too many would
    leave and `allow_removals` is not given."""
    insert = dialect_insert(conn.engine)
    existing = await _on_roll_records(conn, document.urn)
    uploaded = {pupil.id for pupil in document.pupils}
    left = sorted(set(existing) - uploaded)
    if not allow_removals and too_many_leave(len(left), len(existing), len(uploaded)):
        raise RosterWouldShrink([_who(existing[pupil_id]) for pupil_id in left], len(existing))
    school_json = document.model_dump(mode="json", exclude={"pupils"})
    statement = insert(schools).values(urn=document.urn, document=school_json, updated_at=now)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[schools.c.urn],
            set_={"document": statement.excluded.document},
        )
    )
    await _touch(conn, document.urn, now)
    if document.pupils:
        rows = [
            {
                "school_urn": document.urn,
                "pupil_id": pupil.id,
                "record": pupil.model_dump(mode="json"),
                "on_roll": True,
                "removed_on": None,
                "updated_at": now,
            }
            for pupil in document.pupils
        ]
        for start in range(0, len(rows), _CHUNK):
            await _upsert_pupils(conn, rows[start : start + _CHUNK], now)
    if left:
        await conn.execute(
            update(pupils)
            .where(pupils.c.school_urn == document.urn, pupils.c.pupil_id.in_(left))
            .values(on_roll=False, updated_at=now)
        )
    return {
        "pupils": len(uploaded),
        "added": len(uploaded - set(existing)),
        "left": len(left),
        "joined": [_who(pupil.model_dump()) for pupil in document.pupils
                   if pupil.id not in existing],
        "leavers": [_who(existing[pupil_id]) for pupil_id in left],
    }


async def _upsert_pupils(conn: AsyncConnection, rows: list[dict[str, Any]],
                         now: dt.datetime) -> None:
    statement = dialect_insert(conn.engine)(pupils).values(rows)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[pupils.c.school_urn, pupils.c.pupil_id],
            set_={
                "record": statement.excluded.record,
                "on_roll": True,
                "removed_on": None,
                "updated_at": now,
            },
        )
    )


async def stored_document(conn: AsyncConnection, urn: str) -> dict[str, Any] | None:
    """The school document as stored, with the pupils on roll (in id order): what a `PUT`
    of the same school would send."""
    document = await conn.scalar(select(schools.c.document).where(schools.c.urn == urn))
    if document is None:
        return None
    records = await _on_roll_records(conn, urn)
    return {**document, "pupils": [records[pupil_id] for pupil_id in sorted(records)]}


async def pupil_record(conn: AsyncConnection, urn: str,
                       pupil_id: str) -> tuple[dict[str, Any], bool] | None:
    """A pupil's stored record and whether they are on roll."""
    row = (await conn.execute(select(pupils.c.record, pupils.c.on_roll).where(
        pupils.c.school_urn == urn, pupils.c.pupil_id == pupil_id))).first()
    return None if row is None else (row.record, bool(row.on_roll))


async def store_pupil(conn: AsyncConnection, urn: str, pupil: Pupil, now: dt.datetime) -> None:
    """Create or replace one pupil's record, on roll (`PUT`/`PATCH …/pupils/{id}`)."""
    await _upsert_pupils(conn, [{"school_urn": urn, "pupil_id": pupil.id,
                                 "record": pupil.model_dump(mode="json"), "on_roll": True,
                                 "removed_on": None, "updated_at": now}], now)
    await _touch(conn, urn, now)


async def take_off_roll(conn: AsyncConnection, urn: str, pupil_id: str,
                        now: dt.datetime) -> bool:
    """One pupil leaves the roll, their history kept (as a full upload without them)."""
    result = await conn.execute(update(pupils).where(
        pupils.c.school_urn == urn, pupils.c.pupil_id == pupil_id,
        pupils.c.on_roll.is_(True)).values(on_roll=False, updated_at=now))
    if not result.rowcount:
        return False
    await _touch(conn, urn, now)
    return True
