"""Storage of the rate counters (docs/rules.md "Rates"): one row per pupil per school year, moved by the
difference each new or amended mark makes, never recomputed from a year of marks."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable

from servicekit.database import bulk_execute, bulk_insert
from sqlalchemy import Insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.history import rows_for_keys
from triage.models import attendance_counters, marks
from triage.rates import Counts, counts_from_codes, delta, school_year_start

COUNTER_COLUMNS = ("school_urn", "pupil_id", "year_start", "possible", "authorised",
                   "unauthorised", "updated_at")
CounterKey = tuple[str, str, dt.date]  # school, pupil, school year start
MarkChange = tuple[tuple[str, str, dt.date, str], str | None, str]  # key, old code, new code


def deltas(changes: Iterable[MarkChange]) -> dict[CounterKey, Counts]:
    """Pure: how each pupil-year's counters move for a batch of mark changes."""
    moved: dict[CounterKey, Counts] = defaultdict(Counts)
    for (urn, pupil_id, day, _session), old, new in changes:
        counter = (urn, pupil_id, school_year_start(day))
        moved[counter] = moved[counter] + delta(old, new)
    return {k: v for k, v in moved.items() if v != Counts()}


async def apply_changes(conn: AsyncConnection, changes: list[MarkChange], now: dt.datetime) -> None:
    moved = deltas(changes)
    if not moved:
        return
    rows = [
        {"school_urn": urn, "pupil_id": pupil_id, "year_start": year, "possible": c.possible,
         "authorised": c.authorised, "unauthorised": c.unauthorised, "updated_at": now}
        for (urn, pupil_id, year), c in sorted(moved.items())  # sorted: a stable lock order
    ]
    await bulk_execute(conn, _upsert(conn.dialect.name), attendance_counters, COUNTER_COLUMNS,
                       rows)


@functools.cache
def _upsert(dialect_name: str) -> Insert:
    """Built once per dialect and used again (see `history.pupil_rows`)."""
    table = attendance_counters
    statement = bulk_insert(dialect_name, table, COUNTER_COLUMNS)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[table.c.school_urn, table.c.pupil_id, table.c.year_start],
        set_={
            "possible": table.c.possible + statement.excluded.possible,
            "authorised": table.c.authorised + statement.excluded.authorised,
            "unauthorised": table.c.unauthorised + statement.excluded.unauthorised,
            "updated_at": statement.excluded.updated_at,
        },
    )


async def load(conn: AsyncConnection, keys: Iterable[CounterKey]) -> dict[CounterKey, Counts]:
    wanted = set(keys)
    found: dict[CounterKey, Counts] = {}
    rows = await rows_for_keys(
        conn, attendance_counters,
        ("school_urn", "pupil_id", "year_start", "possible", "authorised", "unauthorised"),
        "year_start", wanted)
    for urn, pupil_id, year, possible, authorised, unauthorised in rows:
        found[(urn, pupil_id, year)] = Counts(possible, authorised, unauthorised)
    none = Counts()
    return {k: found.get(k, none) for k in wanted}


async def recount(conn: AsyncConnection, school_urn: str, pupil_id: str,
                  year_start: dt.date) -> Counts:
    """From scratch, for checking the incremental path (tests, operators); not used per event."""
    year_end = dt.date(year_start.year + 1, year_start.month, 1)
    codes = (await conn.execute(
        select(marks.c.code).where(
            marks.c.school_urn == school_urn, marks.c.pupil_id == pupil_id,
            marks.c.date >= year_start, marks.c.date < year_end,
        )
    )).scalars()
    return counts_from_codes(codes)


async def term_counts(conn: AsyncConnection, school_urn: str, pupil_id: str,
                      start: dt.date, end: dt.date) -> Counts:
    codes = (await conn.execute(
        select(marks.c.code).where(
            marks.c.school_urn == school_urn, marks.c.pupil_id == pupil_id,
            marks.c.date >= start, marks.c.date <= end,
        )
    )).scalars()
    return counts_from_codes(codes)
