"""SQLite through aiosqlite, one hand-off to its thread per statement.

SQLAlchemy's aiosqlite adapter makes four trips to the connection's thread for each statement
(open a cursor, execute, fetch, close), each a wake-up of that thread and then of the event
loop. On a busy morning a batch's dozen statements made some 90 of them, and the loop sat
idle through every one. Here a statement runs start to finish in one trip: the rows come back
with it and the cursor is closed behind them (its description, row count and last row id stay
readable). Everything else (connecting, transactions, errors, the pool) is SQLAlchemy's own
aiosqlite support, so the URL stays `sqlite+aiosqlite://`.

Private interfaces: SQLAlchemy's `AsyncAdapt_aiosqlite_*` adapter classes (their
`_execute_async`, `_executemany_async`, `_async_soft_close`, `_cursor_cls`, `_connection`,
`_execute_mutex`) and aiosqlite's `Connection._execute` and `_conn`. Tested on the versions
pyproject.toml pins (SQLAlchemy >=2.1.9,<2.2, aiosqlite >=0.22.1,<0.23) by
tests/test_sqlite_driver.py, which must pass before a bound is raised. Measured by `make
bench` in the same run against SQLAlchemy's stock adapter ("triage on SQLite, SQLAlchemy's
stock aiosqlite adapter"): x1.07, x1.22 and x1.34 in three quick runs. If that ratio falls to about
x1, drop this module for the stock adapter."""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT


def _run(connection: sqlite3.Connection, operation: str, parameters: Any,
         many: bool) -> tuple[sqlite3.Cursor, list[Any] | None]:
    """On the connection's thread: execute, fetch every row, close."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        return cursor, cursor.fetchall() if cursor.description else None
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # The base class opens an aiosqlite cursor here (a trip); the statement opens its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # the executed, closed sqlite3 cursor
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    @property
    def description(self) -> Any:
        return None if self._cursor is None else self._cursor.description

    @property
    def rowcount(self) -> int:
        return -1 if self._cursor is None else self._cursor.rowcount

    @property
    def lastrowid(self) -> Any:
        return None if self._cursor is None else self._cursor.lastrowid

    def close(self) -> None:
        self._rows.clear()  # the sqlite3 cursor was closed on its thread

    async def _async_soft_close(self) -> None:
        return

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._trip(operation, seq_of_parameters, many=True)

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            self._cursor, rows = await connection._execute(  # type: ignore[no-untyped-call]
                _run, connection._conn, operation, parameters, many)
            self._rows = collections.deque(rows or ())


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor  # type: ignore[assignment]  # a subclass, by design


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """Pass as `module=` to `create_async_engine` for a `sqlite+aiosqlite://` URL."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> _OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return _OneTripConnection(self, adapted._connection)
