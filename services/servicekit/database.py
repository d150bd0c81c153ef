"""Engine creation and the few dialect differences (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Select,
    String,
    Table,
    Text,
    bindparam,
    cast,
    event,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from servicekit.private_files import private_file
from servicekit.sqlite_driver import OneTripDbapi


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Stores aware UTC timestamps; SQLite has no time zones, so normalise on the way in and out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC timestamp is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def make_engine(url: str, *, one_trip: bool = True) -> AsyncEngine:
    """JSON columns are read with orjson: a busy morning reads every pupil's roster record,
    and `json.loads` (three times slower) took a twentieth of the consumer's CPU. They are
    still written by `json.dumps`, which accepts more than orjson does (numeric keys).

    `one_trip=False`: SQLite through SQLAlchemy's stock aiosqlite adapter instead of
    `servicekit.sqlite_driver` (the benchmark measures what the driver is worth)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        driver: dict[str, Any] = {"module": OneTripDbapi()} if one_trip else {}
        engine = create_async_engine(url, json_deserializer=orjson.loads,
                                     connect_args={"timeout": 30}, **driver)

        if parsed.database and parsed.database != ":memory:":
            database = Path(parsed.database)

            @event.listens_for(engine.sync_engine, "do_connect")
            def _private_database(*_: Any) -> None:
                # Created on first connection, as SQLite would, but 0600 in a 0700 directory.
                private_file(database)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # Each commit reaches the disk before it returns: a batch is acked to the broker
            # after its commit, so under NORMAL a power cut could lose events already acked.
            # (The full-size morning: about 4% slower.)
            cursor.execute("PRAGMA synchronous=FULL")
            # Copy the log back into the database every 40 MB instead of every 4: a busy
            # morning's batches rewrite the same index pages, written back once instead of
            # ten times (a batch's commit: 9.9 ms against 5.1 ms at 100,000 events). The log
            # file is cut back to 64 MB after each copy.
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.execute("PRAGMA journal_size_limit=67108864")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # Plan each statement for its own parameters. Statements are prepared once per
    # connection, and a generic plan chosen while a table was small (a new deployment, a new
    # school year) would keep scanning it as it grows: an empty `marks` table taught the
    # planner to walk its whole index for every batch's lookup. And price a random page read
    # as what it is on SSDs and a cached working set, not a disk seek: at the default (4) the
    # planner preferred a full scan of 105,000 marks (15 ms) to 250 index lookups (2 ms) for
    # every batch of a busy morning.
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, json_deserializer=orjson.loads,
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan",
                                          "random_page_cost": "1.1"}})


def dialect_insert(engine: AsyncEngine | str) -> Any:
    """`insert` with ON CONFLICT support for whichever database we are on (an engine, or its
    dialect's name)."""
    name = engine if isinstance(engine, str) else engine.dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


@functools.cache
def key_table(dialect_name: str, names: tuple[str, str] = ("school_urn", "pupil_id")) -> Any:
    """A batch of two-part keys as a table to join against; `key_values` gives its rows.

    `(a, b) IN ((...), (...))` makes SQLite scan the whole table (it cannot use an index for
    row values against a list), and on both databases it renders a new statement for every
    batch size. This is one statement whatever the batch (compiled and prepared once), and an
    index lookup per key: a JSON array walked by `json_each` on SQLite, `unnest` of two
    arrays on PostgreSQL."""
    first, second = names
    if dialect_name == "postgresql":
        return func.unnest(
            bindparam("key_firsts", type_=postgresql.ARRAY(String)),
            bindparam("key_seconds", type_=postgresql.ARRAY(String)),
        ).table_valued(first, second).render_derived()
    walked = func.json_each(bindparam("key_rows", type_=String)).table_valued("value")
    return select(func.json_extract(walked.c.value, "$[0]").label(first),
                  func.json_extract(walked.c.value, "$[1]").label(second)).subquery()


def key_values(dialect_name: str, keys: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The parameters that fill `key_table`, one row per distinct key."""
    rows = sorted(set(keys))
    if dialect_name == "postgresql":
        return {"key_firsts": [k[0] for k in rows], "key_seconds": [k[1] for k in rows]}
    return {"key_rows": _json_text(rows)}


def rows_table(dialect_name: str, columns: Sequence[tuple[str, Any]]) -> Any:
    """A batch of rows of (name, type) columns as a table to join against, as `key_table`
    does for keys: one statement whatever the batch, where a VALUES list or a CASE with a
    choice per row is a statement of its own for every size. `rows_values` gives its rows.
    Columns are strings, numbers, booleans or nulls (SQLite reads them from JSON)."""
    if dialect_name == "postgresql":
        return func.unnest(*[bindparam(f"rows_{name}", type_=postgresql.ARRAY(type_))
                             for name, type_ in columns]
                           ).table_valued(*[name for name, _ in columns]).render_derived()
    walked = func.json_each(bindparam("rows_json", type_=String)).table_valued("value")
    return select(*[type_coerce(func.json_extract(walked.c.value, f"$[{index}]"), type_)
                    .label(name) for index, (name, type_) in enumerate(columns)]).subquery()


def rows_values(dialect_name: str, names: Sequence[str], rows: Sequence[Sequence[Any]]
                ) -> dict[str, Any]:
    """The parameters that fill `rows_table`: each row's values in the columns' order."""
    if dialect_name == "postgresql":
        return {f"rows_{name}": [row[index] for row in rows] for index, name in enumerate(names)}
    return {"rows_json": _json_text(list(rows))}


def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)


@functools.cache
def _unnested(table: Table, names: tuple[str, ...]) -> Select[Any]:
    rows = func.unnest(*[bindparam(f"bulk_{name}", type_=postgresql.ARRAY(
        Text if _is_json(table, name) else table.c[name].type))
        for name in names]).table_valued(*names).render_derived()
    return select(*[cast(rows.c[name], table.c[name].type) if _is_json(table, name)
                    else rows.c[name] for name in names])


def bulk_insert(dialect_name: str, table: Table, names: Sequence[str]) -> Any:
    """An INSERT (with ON CONFLICT support) of a batch's rows, run with `bulk_execute`.

    PostgreSQL: one statement, one array per column unnested. Run once per row instead
    (executemany), the driver and SQLAlchemy's per-row parameter handling took twice as long
    (500 marks: 9.7 ms against 4.6 ms).
    SQLite: a plain INSERT the driver runs once per row, given tuples it stores as they
    are. SQLite 3.40 has no array parameter; one JSON array of rows walked by `json_each`
    parses each row again for every column, and for 500 events with their payloads took
    6.2 ms against 2.5 ms. (It cannot return rows: see `bulk_execute`.)"""
    insert = dialect_insert(dialect_name)(table)
    if dialect_name == "postgresql":
        return insert.from_select(list(names), _unnested(table, tuple(names)))
    return insert.values({name: bindparam(name) for name in names})


async def bulk_execute(conn: AsyncConnection, statement: Any, table: Table,
                       names: Sequence[str], rows: list[dict[str, Any]]) -> CursorResult[Any]:
    """Run a `bulk_insert` statement (with its ON CONFLICT clause) for a batch's rows. No two
    rows may share a conflict key. JSON columns are given as JSON text (a model's
    `model_dump_json()`, much cheaper than a dict serialised by SQLAlchemy). RETURNING works
    on PostgreSQL only: SQLite's driver returns no rows from executemany."""
    if not rows:
        raise ValueError("bulk_execute needs at least one row")
    result: CursorResult[Any]
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            statement, {f"bulk_{name}": [row[name] for row in rows] for name in names})
        return result
    sql, parameters = _driver_form(statement, table, conn.dialect)
    columns = [[row[name] for row in rows] if form is None
               else _stored(form, [row[name] for row in rows]) for name, form in parameters]
    result = await conn.exec_driver_sql(sql, list(zip(*columns)))
    return result


@functools.cache
def _driver_form(statement: Any, table: Table, dialect: Dialect
                 ) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The SQL text the driver runs, and its parameters in order, each with its conversion
    to what the driver is given (what SQLAlchemy itself would pass; None for JSON columns,
    which arrive as JSON text already)."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, tuple(
        (name, None if _is_json(table, name)
         else table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in compiled.positiontup)


def _json_text(rows: list[Any]) -> str:
    """Rows of strings, numbers and nulls as JSON text: orjson writes a batch's 500 rows in a
    twelfth of the time `json.dumps` takes."""
    return orjson.dumps(rows).decode()


def _stored(form: Any, values: list[Any]) -> list[Any]:
    """A batch shares a few dates and one timestamp: convert each distinct value once (JSON
    columns, the only unhashable values, have no conversion and never come here)."""
    seen: dict[Any, Any] = {}
    return [seen[value] if value in seen else seen.setdefault(value, form(value))
            for value in values]


def supports_skip_locked(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def database_reachable(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness reports any failure as "not ready"
        return False
