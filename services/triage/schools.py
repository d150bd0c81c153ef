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
                self._cache[urn] = (stamp, _context(document))
        return {urn: self._cache[urn][1] for urn, _ in stamps}


def _context(document: dict[str, Any]) -> SchoolContext:
    return SchoolContext(
        urn=document["urn"],
        name=document["name"],
        phone=document.get("phone"),
        tz=ZoneInfo(document.get("timezone") or "Europe/London"),
        calendar=SchoolCalendar.from_document(document["calendar"]),
        policy=Policy.model_validate(document.get("policy") or {}),
        document=document,
    )


async def store_school(
    conn: AsyncConnection, document: SchoolDocument, now: dt.datetime
) -> dict[str, int]:
    """Create or replace a school and its roster. Pupils missing from the upload are marked as
    left, their history kept (docs/contract.md §3)."""
    insert = dialect_insert(conn.engine)
    school_json = document.model_dump(mode="json", exclude={"pupils"})
    statement = insert(schools).values(urn=document.urn, document=school_json, updated_at=now)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[schools.c.urn],
            set_={"document": statement.excluded.document, "updated_at": now},
        )
    )
    existing = set(
        (
            await conn.execute(
                select(pupils.c.pupil_id).where(
                    pupils.c.school_urn == document.urn, pupils.c.on_roll.is_(True)
                )
            )
        ).scalars()
    )
    uploaded = {pupil.id for pupil in document.pupils}
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
            statement = insert(pupils).values(rows[start : start + _CHUNK])
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
    left = existing - uploaded
    if left:
        await conn.execute(
            update(pupils)
            .where(pupils.c.school_urn == document.urn, pupils.c.pupil_id.in_(left))
            .values(on_roll=False, updated_at=now)
        )
    return {
        "pupils": len(uploaded),
        "added": len(uploaded - existing),
        "left": len(left),
    }
