"""The notifier's busiest statements are compiled once, whatever the batch or group size.

SQLAlchemy caches a compiled statement by its shape. A multi-row VALUES list or a CASE with one
choice per row is a new shape for every size (the settle now joins its rows in as a
`servicekit.database.rows_table`), and against the instant stub those compiles
were a fifth of the notifier's time (bench/results.md, "notifier send rate, unlimited")."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from notifier import migrations
from notifier.notification_store import Settlement, Status, add, claim_due, settle
from servicekit.database import make_engine
from sqlalchemy import event
from sqlalchemy.engine.default import DefaultExecutionContext

NOW = dt.datetime(2026, 11, 23, 8, 30, tzinfo=dt.UTC)
SIZES = range(1, 14)


def _row(request: int, index: int) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "request_id": f"r{request}", "rule": "first_day_contact",
            "school_urn": "100001", "pupil_ids": ["p1"], "recipient_role": "parent",
            "recipient_ref": f"c{index}", "channel": "sms", "to": "+447700900123",
            "subject": None, "body": "Please call the school.", "html": None,
            "status": Status.PENDING, "attempts": 0, "due_at": NOW, "created_at": NOW,
            "updated_at": NOW, "kind": "recipient", "family_index": None, "language": "en",
            "sender_name": None}


async def test_rows_stored_and_settled_in_any_number_compile_a_few_shapes(
        database_url: str) -> None:
    engine = make_engine(database_url)
    await migrations.upgrade(engine)
    misses: dict[str, int] = {}

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, _params: Any,
               context: DefaultExecutionContext, _many: bool) -> None:
        words = statement.split()
        kind = " ".join(words[:3]) if words[0] == "INSERT" else " ".join(words[:2])
        if context.cache_hit == context.cache_hit.CACHE_MISS:
            misses[kind] = misses.get(kind, 0) + 1

    try:
        for size in SIZES:
            async with engine.begin() as conn:
                await add(conn, [_row(size, index) for index in range(size)])
        for size in SIZES:
            async with engine.begin() as conn:
                claimed = await claim_due(conn, NOW, size, expiry=dt.timedelta(minutes=5),
                                          holding=set())
                assert len(claimed) == size
                statuses = await settle(conn, [
                    (row, Settlement(Status.SENT, 1, provider_id=f"SM{uuid.uuid4().hex}"))
                    for row in claimed], NOW)
                assert statuses == [Status.SENT] * size
    finally:
        await engine.dispose()

    # One row is a plain execute, more an executemany: two shapes, not thirteen.
    assert misses.get("INSERT INTO notifications", 0) <= 2, misses
    # The claim's two statements and the settle's one, for groups of 1 to 13 rows.
    assert misses.get("UPDATE notifications", 0) <= 3, misses
