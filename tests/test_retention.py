"""Nothing kept forever, nothing purged unannounced (docs/security.md "Retention"): each store
that grows with traffic has a retention setting, the services purge past it, and lists are
bounded by the database rather than after loading a whole table."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from notifier.migrations import upgrade as upgrade_notifier
from notifier.models import notifications
from notifier.settings import NotifierSettings
from pydantic import SecretStr
from servicekit.clock import FrozenClock
from sqlalchemy import event, insert

from tests.stack import API_TOKEN

START = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
async def notifier(database_url: str, tmp_path: Path) -> AsyncIterator[NotifierService]:
    """The notifier's storage and API, no broker: these tests write rows and read them back."""
    settings = NotifierSettings(database_url=database_url, api_token=SecretStr(API_TOKEN),
                                outbox_dir=tmp_path / "outbox")
    service = NotifierService(settings, FrozenClock(START))
    await upgrade_notifier(service.engine)
    yield service
    await service.engine.dispose()


def _notification(n: int, pupil_ids: list[str], *, created_at: dt.datetime) -> dict[str, Any]:
    return {"id": f"n{n:03d}", "request_id": f"r{n}", "rule": "first_day_contact",
            "school_urn": "123456", "pupil_ids": pupil_ids, "recipient_role": "contact",
            "recipient_ref": f"ref{n}", "channel": "sms", "to": "+447700900001",
            "body": "text", "status": "sent", "attempts": 1, "due_at": created_at,
            "created_at": created_at, "updated_at": created_at}


async def test_notification_list_is_limited_and_filtered_by_the_database(
        notifier: NotifierService) -> None:
    """The log reads oldest first, as before; `limit` and `pupil_id` are part of the query,
    so a long log is never loaded whole to answer for a few rows."""
    rows = [_notification(n, ["P1"] if n % 3 else ["P2", "P1"] if n % 2 else ["P2"],
                          created_at=START + dt.timedelta(minutes=n)) for n in range(1, 31)]
    async with notifier.engine.begin() as conn:
        await conn.execute(insert(notifications), rows)
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    event.listen(notifier.engine.sync_engine, "before_cursor_execute", seen)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=notifier_app(notifier)),
                                 base_url="http://notifier.test",
                                 headers={"Authorization": f"Bearer {API_TOKEN}"}) as api:
        oldest = (await api.get("/api/v1/notifications", params={"limit": 4})).json()
        of_p2 = (await api.get("/api/v1/notifications",
                               params={"pupil_id": "P2", "limit": 3})).json()
        none = (await api.get("/api/v1/notifications", params={"pupil_id": "P"})).json()
    event.remove(notifier.engine.sync_engine, "before_cursor_execute", seen)

    assert [n["id"] for n in oldest] == ["n001", "n002", "n003", "n004"]
    wanted = [row["id"] for row in rows if "P2" in row["pupil_ids"]][:3]
    assert [n["id"] for n in of_p2] == wanted == ["n003", "n006", "n009"]
    assert none == []  # a pupil id is matched whole, not as a prefix
    listed = [s for s in statements if "FROM notifications" in s]
    assert listed and all("LIMIT" in s.upper() for s in listed), listed
