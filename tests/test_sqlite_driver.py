"""The embedded SQLite engine runs each statement in one trip to aiosqlite's thread, and
behaves as SQLAlchemy's own aiosqlite support does: rows, RETURNING, row counts, last row
ids, executemany, errors and rollback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from servicekit.database import make_engine
from servicekit.sqlite_driver import OneTripDbapi
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()
items = Table("items", metadata,
              Column("id", Integer, primary_key=True, autoincrement=True),
              Column("name", String(20), nullable=False, unique=True))


@pytest.fixture(params=[True, False], ids=["one-trip", "stock-adapter"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """Each behaviour holds for this driver and for SQLAlchemy's stock adapter alike (the
    benchmark's comparison runs on the second)."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}",
                         one_trip=request.param)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call queued to a connection's thread, by name."""
    seen: list[str] = []
    queue = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await queue(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_a_statement_is_one_trip_to_the_connection_thread(
        engine: AsyncEngine, trips: list[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("SELECT 1"))  # connection checked out and ready
        trips.clear()
        await conn.execute(insert(items), [{"name": "a"}, {"name": "b"}])
        rows = (await conn.execute(select(items.c.name).order_by(items.c.name))).all()
        if isinstance(engine.dialect.dbapi, OneTripDbapi):
            assert len(trips) == 2, trips
        else:
            assert len(trips) > 2, trips  # SQLAlchemy's own adapter makes seven
    assert [r.name for r in rows] == ["a", "b"]


async def test_rows_counts_and_ids_come_back_as_from_sqlalchemys_adapter(
        engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await conn.execute(insert(items).values(name="a"))
        assert first.inserted_primary_key == (1,)
        many = await conn.execute(insert(items), [{"name": n} for n in ("b", "c", "d")])
        assert many.rowcount == 3
        returned = await conn.execute(
            insert(items).values(name="e").returning(items.c.id, items.c.name))
        assert returned.one() == (5, "e")
        changed = await conn.execute(update(items).where(items.c.id > 3).values(name=items.c.name + "!"))
        assert changed.rowcount == 2
        removed = await conn.execute(delete(items).where(items.c.name == "b"))
        assert removed.rowcount == 1
        assert (await conn.execute(select(func.count()).select_from(items))).scalar_one() == 4
        assert (await conn.execute(select(items).where(items.c.id == 99))).first() is None
        assert [r.name for r in (await conn.execute(
            select(items.c.name).order_by(items.c.id))).fetchmany(2)] == ["a", "c"]


async def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(items).values(name="kept"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="lost"))
            await conn.execute(insert(items).values(name="kept"))  # unique name
    with pytest.raises(OperationalError):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT nothing FROM nowhere"))
    async with engine.connect() as conn:  # the pool's connection still works
        names = (await conn.execute(select(items.c.name))).scalars().all()
    assert names == ["kept"]


async def test_a_commit_is_on_disk_before_it_returns(engine: AsyncEngine) -> None:
    """A batch is acked to the broker after its commit: the commit must survive a power cut,
    not only a crash of the process (`synchronous=FULL` in WAL mode)."""
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 2  # FULL
