"""Reading what the rules need about a batch's pupils, a few queries per batch: their marks
around the batch's dates, their roster records, and the rules' stored per-pupil state."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from servicekit.database import dialect_insert, key_table, key_values
from sqlalchemy import Row, Select, Table, and_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import marks, pupils, replies, rule_states

# pupil -> date -> session -> code
PupilMarks = dict[str, dict[dt.date, dict[str, str]]]
StateKey = tuple[str, str, str]  # pupil, rule, scope


PupilKey = tuple[str, str]  # school, pupil


def for_pupils(dialect_name: str, table: Table, columns: list[Any], *conditions: Any) -> Select:
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


async def rows_for_keys(conn: AsyncConnection, table: Table, columns: list[Any], third: Any,
                        keys: Iterable[tuple[str, str, Any]]) -> Sequence[Row[Any]]:
    """`columns` of `table` for keys (school, pupil, `third`): the pupils' rows whose `third`
    is among the keys' values, one index lookup per pupil. The caller keeps the exact keys
    (a batch usually has one date or year, so little more is read)."""
    wanted = set(keys)
    rows = await conn.execute(
        for_pupils(conn.dialect.name, table, columns,
                   third.in_(sorted({k[2] for k in wanted}))),
        pupil_keys(conn, {(k[0], k[1]) for k in wanted}),
    )
    return rows.all()  # one fetch, not a fetch per row


async def marks_between_many(conn: AsyncConnection, keys: Iterable[PupilKey], start: dt.date,
                             end: dt.date, codes: Iterable[str] | None = None
                             ) -> dict[str, PupilMarks]:
    """`marks_between` for pupils of many schools in one query: a busy morning's batch spans
    dozens of schools, and a query per school dominated its cost."""
    found: dict[str, PupilMarks] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    conditions = [marks.c.date >= start, marks.c.date <= end]
    if codes is not None:
        conditions.append(marks.c.code.in_(sorted(codes)))
    query = for_pupils(conn.dialect.name, marks,
                       [marks.c.school_urn, marks.c.pupil_id, marks.c.date, marks.c.session,
                        marks.c.code], *conditions)
    for urn, pupil_id, day, session, code in (
            await conn.execute(query, pupil_keys(conn, keys))).all():
        found[urn][pupil_id][day][session] = code
    return found


async def marks_between(conn: AsyncConnection, school_urn: str, pupil_ids: Iterable[str],
                        start: dt.date, end: dt.date,
                        codes: Iterable[str] | None = None) -> PupilMarks:
    """One school's pupils' marks between two dates (see `marks_between_many`)."""
    found = await marks_between_many(conn, [(school_urn, p) for p in pupil_ids], start, end,
                                      codes)
    return found[school_urn]


async def roster_records_many(conn: AsyncConnection, keys: Iterable[PupilKey]
                              ) -> dict[PupilKey, tuple[dict[str, Any], bool]]:
    rows = await conn.execute(
        for_pupils(conn.dialect.name, pupils, [pupils.c.school_urn, pupils.c.pupil_id,
                                               pupils.c.record, pupils.c.on_roll]),
        pupil_keys(conn, keys),
    )
    return {(urn, pupil_id): (record, on_roll)
            for urn, pupil_id, record, on_roll in rows.all()}


async def load_states_many(conn: AsyncConnection, keys: Iterable[PupilKey]
                           ) -> dict[str, dict[StateKey, tuple[bool, int, dt.date | None]]]:
    found: dict[str, dict[StateKey, tuple[bool, int, dt.date | None]]] = defaultdict(dict)
    rows = await conn.execute(
        for_pupils(conn.dialect.name, rule_states,
                   [rule_states.c.school_urn, rule_states.c.pupil_id, rule_states.c.rule,
                    rule_states.c.scope, rule_states.c.armed, rule_states.c.crossings,
                    rule_states.c.covered_until]),
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
    statement = dialect_insert(conn.engine)(rule_states)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[rule_states.c.school_urn, rule_states.c.pupil_id, rule_states.c.rule,
                        rule_states.c.scope],
        set_={"armed": statement.excluded.armed, "crossings": statement.excluded.crossings,
              "covered_until": statement.excluded.covered_until,
              "updated_at": statement.excluded.updated_at},
    ), rows)


async def replied_since(conn: AsyncConnection, school_urn: str, pupil_id: str,
                        since: dt.datetime) -> bool:
    """rules.md §4 "Replies": has a parent replied about this pupil since `since`?"""
    row = (await conn.execute(
        select(replies.c.reply_id).where(
            replies.c.school_urn == school_urn, replies.c.pupil_id == pupil_id,
            replies.c.received_at >= since,
        ).limit(1)
    )).first()
    return row is not None
