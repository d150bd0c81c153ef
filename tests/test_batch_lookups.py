"""A batch's reads by pupil: exact across schools, and an index lookup per pupil on both
databases however large the tables grow (a school year of marks is tens of millions of rows)."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from broker_messages.events import EVENT_ADAPTER
from servicekit.clock import FrozenClock
from servicekit.database import bulk_execute, bulk_insert, make_engine
from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from triage import evaluation, history
from triage.calendar import SchoolCalendar
from triage.housekeeping import triage_purges
from triage.ingest import Ingestor
from triage.migrations import upgrade
from triage.models import decisions, marks, pupils, received_events, scheduled_actions
from triage.school_document import SchoolDocument
from triage.schools import SchoolContextCache, store_school
from triage.settings import TriageSettings

from tests.factories import LONDON, URN, mark, pupil, school

MONDAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def _fill(engine: AsyncEngine, schools: list[str], pupil_ids: list[str]) -> None:
    """Every school has every pupil id: MIS ids such as P0001 repeat across schools."""
    async with engine.begin() as conn:
        await conn.execute(insert(pupils), [
            {"school_urn": urn, "pupil_id": p, "record": {"id": p}, "on_roll": True,
             "removed_on": None, "updated_at": NOW}
            for urn in schools for p in pupil_ids])
        await conn.execute(insert(marks), [
            {"school_urn": urn, "pupil_id": p, "date": MONDAY - dt.timedelta(days=back),
             "session": "AM", "code": "N" if back == 0 else "/", "recorded_at": NOW,
             "event_id": f"{urn}-{p}-{back}"}
            for urn in schools for p in pupil_ids for back in (0, 7)])


async def test_reads_exactly_the_batch_pupils_when_ids_repeat_across_schools(
        engine: AsyncEngine) -> None:
    await _fill(engine, ["100001", "100002", "100003"], ["P0001", "P0002", "P0003"])
    wanted = {("100001", "P0001"), ("100002", "P0002"), ("100002", "P0001")}
    async with engine.connect() as conn:
        records = await history.roster_records_many(conn, wanted | {("100009", "P0001")})
        found = await history.marks_between_many(conn, wanted, MONDAY, MONDAY)
        empty = await history.marks_between_many(conn, set(), MONDAY, MONDAY)
    assert set(records) == wanted
    assert {(urn, p) for urn, by_pupil in found.items() for p in by_pupil} == wanted
    assert all(days == {MONDAY: {"AM": "N"}} for by_pupil in found.values()
               for days in by_pupil.values())
    assert not empty


@pytest.mark.parametrize("table", [pupils, marks], ids=["pupils", "marks"])
async def test_sqlite_looks_each_pupil_up_in_the_index(tmp_path: object, table: object) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/plan.db")
    try:
        await upgrade(engine)
        query = history.for_pupils("sqlite", table, [table.c.pupil_id])  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            compiled = query.compile(conn.sync_connection)  # type: ignore[arg-type]
            params = compiled.construct_params(history.pupil_keys(conn, [("1", "P1")]))
            plan = [row[-1] for row in await conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}",
                tuple(params[name] for name in compiled.positiontup))]  # type: ignore[union-attr]
    finally:
        await engine.dispose()
    name = table.name  # type: ignore[attr-defined]
    assert any(line.startswith(f"SEARCH {name} USING") for line in plan), plan
    assert not any(line.startswith(f"SCAN {name}") for line in plan), plan


async def test_postgres_looks_each_pupil_up_in_the_index_as_marks_grow(postgres_url: str) -> None:
    """Mid-morning, before any ANALYZE: the planner expects a handful of marks for today, so
    as a plain join it read every mark of the day and hashed them against the batch, for
    every batch (1 ms at the first batch of a 105,000-pupil morning, 14 ms at the last).
    And a generic plan made while `marks` was empty kept scanning it."""
    engine = make_engine(postgres_url)
    try:
        await upgrade(engine)
        keys = [(str(300000 + n // 350), f"P{n:07d}") for n in range(0, 105000, 210)]
        query = history.for_pupils(
            "postgresql", marks, [marks.c.code],
            marks.c.date >= MONDAY - dt.timedelta(days=14), marks.c.date <= MONDAY)
        async with engine.begin() as conn:
            for _ in range(6):  # past the point where a generic plan may be chosen
                await conn.execute(query, history.pupil_keys(conn, keys))
            await conn.execute(text(
                "INSERT INTO marks (school_urn, pupil_id, date, session, code, recorded_at, "
                "event_id) SELECT (300000 + n / 350)::text, 'P' || lpad(n::text, 7, '0'), "
                "DATE '2026-11-23', 'AM', '/', now(), 'e' || n FROM generate_series(1, 30000) n"))
            compiled = query.compile(conn.sync_connection)  # type: ignore[arg-type]
            params = compiled.construct_params(history.pupil_keys(conn, keys))
            plan = "\n".join(row[0] for row in await conn.exec_driver_sql(
                f"EXPLAIN {compiled}",
                tuple(params[name] for name in compiled.positiontup)))  # type: ignore[union-attr]
            mode = (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one()
    finally:
        await engine.dispose()
    assert mode == "force_custom_plan"
    assert "Scan using marks_pkey" in plan, plan
    assert "= (anon_2.pupil_id)::text" in plan, f"each pupil looked up by its key:\n{plan}"
    assert "Hash" not in plan and "Seq Scan on marks" not in plan, plan


async def _explain(conn: AsyncConnection, query: Any, parameters: dict[str, Any]) -> str:
    compiled = query.compile(conn.sync_connection)
    params = compiled.construct_params(parameters)
    return "\n".join(row[0] for row in await conn.exec_driver_sql(
        f"EXPLAIN {compiled}", tuple(params[name] for name in compiled.positiontup)))


async def test_postgres_reads_a_year_on_pupils_codes_from_the_index_alone(
        postgres_url: str) -> None:
    """bench.year: by the 190th school day each pupil's marks lie a page apart (written a day
    apart), and the rules' reads of the last weeks' codes fetched a heap page per mark; with
    the code in the key's index they are index-only once the table is vacuumed."""
    engine = make_engine(postgres_url)
    try:
        await upgrade(engine)
        keys = [("300000", f"P{n:07d}") for n in range(200)]
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO marks (school_urn, pupil_id, date, session, code, recorded_at, "
                "event_id) SELECT '300000', 'P' || lpad(p::text, 7, '0'), DATE '2026-09-01' + d, "
                "'AM', CASE WHEN (p + d) % 17 = 0 THEN 'O' ELSE '/' END, now(), "
                "'e' || p || '-' || d FROM generate_series(0, 120) d, generate_series(0, 199) p"))
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE marks")
            executed: list[tuple[str, Any]] = []

            def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
                executed.append((statement, parameters))

            # The read exactly as the rules make it (the codes are expanded at execution).
            event.listen(engine.sync_engine, "before_cursor_execute", seen)
            await history.marks_between_many(conn, keys, dt.date(2026, 11, 1),
                                              dt.date(2026, 12, 30), codes=["G", "N", "O", "U"])
            event.remove(engine.sync_engine, "before_cursor_execute", seen)
            (statement, parameters), = executed
            plan = "\n".join(row[0] for row in await conn.exec_driver_sql(
                f"EXPLAIN {statement}", parameters))
    finally:
        await engine.dispose()
    assert "Index Only Scan using marks_pkey" in plan, plan


async def test_postgres_purge_finds_expired_events_by_age(postgres_url: str) -> None:
    """The hourly purge of the deduplication log looked for expired rows with a scan of the
    whole log, once per batch and once more when nothing was due (bench.year)."""
    engine = make_engine(postgres_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO received_events (event_id, kind, school_urn, pupil_id, payload, "
                "received_at) SELECT 'e' || n, 'register.mark/v1', '300000', 'P' || n, '{}', "
                "TIMESTAMPTZ '2025-07-30 09:00+00' - n * INTERVAL '1 minute' "
                "FROM generate_series(1, 50000) n"))
            await conn.exec_driver_sql("ANALYZE received_events")
            # 400 days on from the oldest day: a day's rows are due, the other 34 days' are not.
            now = dt.datetime(2026, 7, 31, 9, tzinfo=dt.UTC)
            target = next(p for p in triage_purges(
                TriageSettings(amqp_url="amqp://unused", database_url=postgres_url), now)
                if p.name == "received_events")
            batch = select(target.key).where(target.expired).limit(1000)
            plan = await _explain(conn, batch, {})
    finally:
        await engine.dispose()
    assert "ix_received_events_received" in plan, plan
    assert "Seq Scan" not in plan, plan


async def test_a_batch_written_in_one_statement_reads_back_as_written(engine: AsyncEngine) -> None:
    """`bulk_insert`: one array per column on PostgreSQL, the driver's executemany of ready
    values on SQLite. JSON (given as text), dates and aware timestamps come back exactly as
    they went in (and compare as dates), and a conflict is still a conflict."""
    names = ("event_id", "kind", "school_urn", "pupil_id", "payload", "received_at")
    rows = [{"event_id": f"e{n}", "kind": "register_mark.v1", "school_urn": "100001",
             "pupil_id": f"P{n:04d}",
             "payload": json.dumps({"code": "N", "n": n, "note": "it's \"quoted\" \u00e9"}),
             "received_at": NOW + dt.timedelta(microseconds=n)} for n in range(300)]
    statement = bulk_insert(engine.dialect.name, received_events, names).on_conflict_do_nothing()
    async with engine.begin() as conn:
        await bulk_execute(conn, statement, received_events, names, rows)
        await bulk_execute(conn, statement, received_events, names,
                           [dict(row, kind="changed") for row in rows[:10]]
                           + [dict(rows[0], event_id="new")])
        stored = {row.event_id: row for row in
                  (await conn.execute(select(received_events))).all()}
    mark_names = ("school_urn", "pupil_id", "date", "session", "code", "recorded_at",
                  "event_id")
    async with engine.begin() as conn:
        await bulk_execute(
            conn, bulk_insert(engine.dialect.name, marks, mark_names), marks, mark_names,
            [{"school_urn": "100001", "pupil_id": "P0001", "date": MONDAY - dt.timedelta(days=back),
              "session": "AM", "code": "N", "recorded_at": NOW, "event_id": f"m{back}"}
             for back in (0, 1, 30)])
        found = await history.marks_between_many(
            conn, {("100001", "P0001")}, MONDAY - dt.timedelta(days=7), MONDAY)
    assert found["100001"]["P0001"] == {MONDAY: {"AM": "N"},
                                        MONDAY - dt.timedelta(days=1): {"AM": "N"}}
    assert set(stored) == {f"e{n}" for n in range(300)} | {"new"}
    assert {stored[f"e{n}"].kind for n in range(10)} == {"register_mark.v1"}, \
        "rows already stored conflict and are left as they were; the new one goes in"
    for row in rows:
        assert stored[row["event_id"]].payload == json.loads(row["payload"])
        assert stored[row["event_id"]].received_at == row["received_at"]
        assert stored[row["event_id"]].received_at.tzinfo is not None


async def test_an_event_already_recorded_is_a_duplicate_in_any_later_batch(
        engine: AsyncEngine) -> None:
    """The deduplication log on both databases: PostgreSQL learns what is new from the insert
    (RETURNING), SQLite by reading the batch's ids first."""
    clock = FrozenClock(dt.datetime(2026, 11, 23, 9, 30, tzinfo=LONDON))
    async with engine.begin() as conn:
        await store_school(conn, SchoolDocument.model_validate(
            school([pupil("P1", contacts=[]), pupil("P2", contacts=[])])), clock.now())
    ingestor = Ingestor(engine, clock, SchoolContextCache())

    def event(pupil_id: str, n: int) -> Any:
        return EVENT_ADAPTER.validate_python({
            "schema": "register.mark/v1", "event_id": f"event-{n}", "school_urn": URN,
            "pupil_id": pupil_id, "date": MONDAY.isoformat(), "session": "AM", "code": "N",
            "recorded_at": dt.datetime(2026, 11, 23, 8, 50 + n, tzinfo=LONDON).isoformat()})

    first = await ingestor.apply([event("P1", 1), event("P2", 2), event("P1", 1)])
    second = await ingestor.apply([event("P2", 2), event("P1", 3), event("P1", 3)])
    assert [o.status for o in first] == ["applied", "applied", "duplicate"]
    assert [o.status for o in second] == ["duplicate", "applied", "duplicate"]
    async with engine.connect() as conn:
        logged = (await conn.execute(select(received_events.c.event_id))).scalars().all()
    assert sorted(logged) == ["event-1", "event-2", "event-3"]


async def test_pupils_in_school_the_day_before_are_judged_on_two_days_exactly_as_on_all(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator reads the rules' look-back of marks only for pupils whose day may be in or
    after an absence episode (`_near_an_episode`). Two schools with the same pupils, history
    and morning, one judged that way and one with every pupil's look-back read: the same
    decisions and the same scheduled actions."""
    rng = random.Random(20261123)
    calendar = SchoolCalendar.from_document(school([])["calendar"])
    days = [MONDAY]
    while len(days) < 16:
        days.insert(0, calendar.previous_school_day(days[0]))  # type: ignore[arg-type]
    past = days[:-1]
    ids = [f"P{n:03d}" for n in range(60)]
    history_rows = []
    for p in ids:  # runs of absence, as real registers have them
        absent = False
        for day in past:
            absent = rng.random() < (0.8 if absent else 0.25)
            kind = rng.choices(["marked", "not possible", "unmarked"], [0.85, 0.1, 0.05])[0]
            for session in ("AM", "PM"):
                code = ("#" if kind == "not possible" else rng.choice(["N", "N", "I"])
                        if absent else rng.choice(["/", "/", "L"]))
                if kind != "unmarked":
                    history_rows.append((p, day, session, code))
    morning = [(p, MONDAY, rng.choice(["/", "N", "N", "L", "I", "#"])) for p in ids]
    # Then amendments to earlier days, a batch of their own.
    amended = [(p, rng.choice(past), rng.choice(["/", "N", "I"])) for p in rng.sample(ids, 10)]
    clock = FrozenClock(dt.datetime(2026, 11, 23, 9, 30, tzinfo=LONDON))
    judged = {"100001": False, "100002": True}  # urn -> every pupil's look-back read
    async with engine.begin() as conn:
        for urn in judged:
            await store_school(conn, SchoolDocument.model_validate(
                school([pupil(p, contacts=[]) for p in ids], urn=urn)), clock.now())
        await conn.execute(insert(marks), [
            {"school_urn": urn, "pupil_id": p, "date": day, "session": session, "code": code,
             "recorded_at": NOW - dt.timedelta(days=1), "event_id": f"{urn}-{p}-{day}-{session}"}
            for urn in judged for p, day, session, code in history_rows])
    ingestor = Ingestor(engine, clock, SchoolContextCache())
    for urn, every_pupil in judged.items():
        if every_pupil:
            monkeypatch.setattr(evaluation, "_near_an_episode", lambda *_: True)
        for batch in (morning, amended):
            outcomes = await ingestor.apply([
                EVENT_ADAPTER.validate_python(mark(p, code, day=day, urn=urn,
                                                   recorded=clock.now()))
                for p, day, code in batch])
            assert {o.status for o in outcomes} == {"applied"}

    async with engine.connect() as conn:
        found = {urn: (
            sorted((r.rule, r.pupil_id, r.dedup_key.replace(urn, "URN"), r.outcome, r.reason)
                   for r in (await conn.execute(
                       select(decisions).where(decisions.c.school_urn == urn))).all()),
            sorted((r.rule, r.pupil_id, r.dedup_key.replace(urn, "URN"), r.date, r.due_at,
                    r.status) for r in (await conn.execute(
                        select(scheduled_actions)
                        .where(scheduled_actions.c.school_urn == urn))).all()))
            for urn in judged}
    assert found["100001"] == found["100002"]
    rules = {rule for rule, *_ in found["100001"][0]}
    assert {"first_day_contact", "day3_home_visit"} <= rules, \
        "the morning decided things worth comparing"
