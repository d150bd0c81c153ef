"""Loading an authority's schools and rosters into a triage database, once per run: later
measurements start from a copy (a PostgreSQL template, a copied SQLite file)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

from servicekit.database import make_engine
from triage.migrations import upgrade
from triage.school_document import SchoolDocument
from triage.schools import store_school

from bench.generator import Authority
from bench.infra import Databases


async def load(database_url: str, authority: Authority, now: dt.datetime) -> float:
    """Store every school the way `PUT /api/v1/schools/{urn}` does; returns seconds taken."""
    started = time.perf_counter()
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        for document in authority.schools:
            async with engine.begin() as conn:
                await store_school(conn, SchoolDocument.model_validate(document), now)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def bulk_load_postgres(databases: Databases, name: str, authority: Authority,
                             now: dt.datetime) -> float:
    """The light path for very large rosters: schools through `store_school`, pupils with
    COPY (same rows, without per-row validation)."""
    started = time.perf_counter()
    engine = make_engine(databases.url(name))
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            for document in authority.schools:
                await store_school(conn, SchoolDocument.model_validate(
                    {**document, "pupils": []}), now)
    finally:
        await engine.dispose()
    conn = await databases.connect(name)
    try:
        for document in authority.schools:
            await conn.copy_records_to_table(
                "pupils", columns=["school_urn", "pupil_id", "record", "on_roll", "updated_at"],
                records=[(document["urn"], p["id"], json.dumps(p), True, now)
                         for p in document["pupils"]])
    finally:
        await conn.close()
    return time.perf_counter() - started


def copy_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"
