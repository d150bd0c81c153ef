"""Reading what the rules need about a batch's pupils, a few queries per batch: their marks
around the batch's dates, their roster records, and the rules' stored per-pupil state."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from servicekit.database import dialect_insert, key_table, key_values
from sqlalchemy import Insert, Row, Select, Table, and_, bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import marks, pupils, replies, rule_states

# pupil -> date -> session -> code
PupilMarks = dict[str, dict[dt.date, dict[str, str]]]
StateKey = tuple[str, str, str]  # pupil, rule, scope


PupilKey = tuple[str, str]  # school, pupil


def for_pupils(dialect_name: str, table: Table, columns: list[Any], *conditions: Any) -> Select[Any]:
    """`SELECT columns FROM table WHERE conditions` for a batch of pupils of any schools, as
    one index lookup per pupil; execute with `pupil_keys(conn, keys)` as the parameters.

    On PostgreSQL each pupil's rows are read in a fenced `LATERAL` subquery (`OFFSET`
    keeps the planner from flattening it). As a plain join, the planner costs the rows with
    the table's statistics, and every morning today's date is past their end: it estimated
    a dozen marks for the day and chose to read all of them, then hash them against the
    batch. That grew with every mark stored (1 ms for the first batch of a 105,000-pupil
    morning, 14 ms for the last)."""
    wanted = key_table(dialect_name)
    same_pupil = and_(table.c.school_urn == wanted.c.school_urn,
                      table.c.pupil_id == wanted.c.pupil_id)
    if dialect_name == "postgresql":
        rows = select(*columns).where(same_pupil, *conditions).offset(0).lateral()
        return select(*rows.c).select_from(wanted.join(rows, true()))
    return select(*columns).select_from(wanted.join(table, same_pupil)).where(*conditions)


def pupil_keys(conn: AsyncConnection, keys: Iterable[PupilKey]) -> dict[str, Any]:
    return key_values(conn.dialect.name, keys)


@functools.cache
def pupil_rows(dialect_name: str, table: Table, names: tuple[str, ...], third: str | None = None
               ) -> Select[Any]:
    """`for_pupils` of these columns, built once: a statement object used again skips
    SQLAlchemy's per-execution work (its cache key, matching the result's columns to the
    cached compilation). With each batch building its own statements, executing them took
    9.7% of the consumer's CPU on a busy morning; built once, 5.3%.
    With `third`, only rows whose `third` column is in the bound list `thirds`."""
    conditions = [] if third is None else [table.c[third].in_(bindparam("thirds", expanding=True))]
    return for_pupils(dialect_name, table, [table.c[name] for name in names], *conditions)


async def rows_for_keys(conn: AsyncConnection, table: Table, names: tuple[str, ...], third: str,
                        keys: Iterable[tuple[Any, ...]]
                        ) -> Sequence[Row[*tuple[Any, ...]]]:
    """Columns `names` of `table` for keys (school, pupil, value of column `third`, …): the
    pupils' rows whose `third` is among the keys' values, one index lookup per pupil. The
    caller keeps the exact keys (a batch usually has one date or year, so little more is
    read)."""
    wanted = set(keys)
    rows = await conn.execute(
        pupil_rows(conn.dialect.name, table, names, third),
        {**pupil_keys(conn, {(k[0], k[1]) for k in wanted}),
         "thirds": sorted({k[2] for k in wanted})},
    )
    fetched: Sequence[Row[*tuple[Any, ...]]] = rows.all()  # one fetch, not a fetch per row
    return fetched


@functools.cache
def _marks_query(dialect_name: str, of_codes: bool) -> Select[Any]:
    conditions = [marks.c.date >= bindparam("start"), marks.c.date <= bindparam("end")]
    if of_codes:
        conditions.append(marks.c.code.in_(bindparam("codes", expanding=True)))
    return for_pupils(dialect_name, marks,
                      [marks.c.school_urn, marks.c.pupil_id, marks.c.date, marks.c.session,
                       marks.c.code], *conditions)


async def marks_between_many(conn: AsyncConnection, keys: Iterable[PupilKey], start: dt.date,
                             end: dt.date, codes: Iterable[str] | None = None
                             ) -> dict[str, PupilMarks]:
    """`marks_between` for pupils of many schools in one query: a busy morning's batch spans
    dozens of schools, and a query per school dominated its cost."""
    found: dict[str, PupilMarks] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    parameters = {**pupil_keys(conn, keys), "start": start, "end": end}
    if codes is not None:
        parameters["codes"] = sorted(codes)
    for urn, pupil_id, day, session, code in (await conn.execute(
            _marks_query(conn.dialect.name, codes is not None), parameters)).all():
        found[urn][pupil_id][day][session] = code
    return found


async def marks_between(conn: AsyncConnection, school_urn: str, pupil_ids: Iterable[str],
                        start: dt.date, end: dt.date,
                        codes: Iterable[str] | None = None) -> PupilMarks:
    """One school's pupils' marks between two dates (see `marks_between_many`)."""
    found = await marks_between_many(conn, [(school_urn, p) for p in pupil_ids], start, end,
                                      codes)
    return found[school_urn]


async def known_pupils(conn: AsyncConnection, keys: Iterable[PupilKey]) -> set[PupilKey]:
    """The keys the roster names, on roll or not (the others' events are parked)."""
    rows = await conn.execute(
        pupil_rows(conn.dialect.name, pupils, ("school_urn", "pupil_id")), pupil_keys(conn, keys))
    return {(urn, pupil_id) for urn, pupil_id in rows.all()}


async def roster_records_many(conn: AsyncConnection, keys: Iterable[PupilKey]
                              ) -> dict[PupilKey, tuple[dict[str, Any], bool]]:
    rows = await conn.execute(
        pupil_rows(conn.dialect.name, pupils, ("school_urn", "pupil_id", "record", "on_roll")),
        pupil_keys(conn, keys),
    )
    return {(urn, pupil_id): (record, on_roll)
            for urn, pupil_id, record, on_roll in rows.all()}


async def load_states_many(conn: AsyncConnection, keys: Iterable[PupilKey]
                           ) -> dict[str, dict[StateKey, tuple[bool, int, dt.date | None]]]:
    found: dict[str, dict[StateKey, tuple[bool, int, dt.date | None]]] = defaultdict(dict)
    rows = await conn.execute(
        pupil_rows(conn.dialect.name, rule_states,
                   ("school_urn", "pupil_id", "rule", "scope", "armed", "crossings",
                    "covered_until")),
        pupil_keys(conn, keys),
    )
    for urn, p, r, scope, armed, crossings, covered in rows.all():
        found[urn][(p, r, scope)] = (armed, crossings, covered)
    return found


async def save_states_many(conn: AsyncConnection,
                           states: dict[str, dict[StateKey, tuple[bool, int, dt.date | None]]],
                           now: dt.datetime) -> None:
    rows = [
        {"school_urn": urn, "pupil_id": p, "rule": r, "scope": s, "armed": armed,
         "crossings": crossings, "covered_until": covered, "updated_at": now}
        for urn, by_key in sorted(states.items())
        for (p, r, s), (armed, crossings, covered) in sorted(by_key.items())
    ]
    if not rows:
        return
    await conn.execute(_states_upsert(conn.dialect.name), rows)


@functools.cache
def _states_upsert(dialect_name: str) -> Insert:
    statement = dialect_insert(dialect_name)(rule_states)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[rule_states.c.school_urn, rule_states.c.pupil_id, rule_states.c.rule,
                        rule_states.c.scope],
        set_={"armed": statement.excluded.armed, "crossings": statement.excluded.crossings,
              "covered_until": statement.excluded.covered_until,
              "updated_at": statement.excluded.updated_at},
    )


async def replied_since(conn: AsyncConnection, school_urn: str, pupil_id: str,
                        since: dt.datetime) -> bool:
    """docs/rules.md "Replies": has a parent replied about this pupil since `since`?"""
    row = (await conn.execute(
        select(replies.c.reply_id).where(
            replies.c.school_urn == school_urn, replies.c.pupil_id == pupil_id,
            replies.c.received_at >= since,
        ).limit(1)
    )).first()
    return row is not None
