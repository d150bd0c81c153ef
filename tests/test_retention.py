"""Nothing kept forever, nothing purged unannounced (docs/security.md "Retention"): each store
that grows with traffic has a retention setting, the services purge past it, and lists are
bounded by the database rather than after loading a whole table."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_messages import topology
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from notifier.migrations import upgrade as upgrade_notifier
from notifier.models import notifications, replies
from notifier.settings import NotifierSettings
from pydantic import SecretStr
from servicekit.clock import FrozenClock
from sqlalchemy import event, func, insert, select
from triage.models import parked_events, received_events

from tests.factories import LONDON, MONDAY, mark, pupil, school
from tests.scenarios import body, emails_about, timeline
from tests.stack import API_TOKEN, Stack

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


async def _count(engine: Any, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _parked_pupils(stack: Stack) -> list[str]:
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(select(parked_events.c.pupil_id)
                                  .order_by(parked_events.c.pupil_id))
        return [pupil_id for (pupil_id,) in rows]


async def test_parked_marks_go_after_30_days_and_newer_ones_stay(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P8"))
    await stack.processed()
    stack.clock.advance(dt.timedelta(days=20))
    await stack.publish(mark("P9", day=MONDAY + dt.timedelta(days=18)))
    await stack.processed()
    assert await _parked_pupils(stack) == ["P8", "P9"]

    stack.clock.advance(dt.timedelta(days=10))  # P8's mark parked 30 days ago, to the minute
    assert (await stack.triage.housekeeping.run_once())["parked_events"] == 0
    stack.clock.advance(dt.timedelta(minutes=1))
    assert (await stack.triage.housekeeping.run_once())["parked_events"] == 1
    assert await _parked_pupils(stack) == ["P9"]


def _parked_alerts(stack: Stack) -> list[Any]:
    return [m for m in stack.smtp.messages if "will be discarded" in str(m["Subject"])]


async def test_parked_marks_are_reported_to_the_officer_before_they_are_discarded(
        stack: Stack) -> None:
    """docs/rules.md "parked_marks_expiring": within 7 days of being discarded, the officer
    hears once a school day, with the pupil ids and the date the first will go."""
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P8"), mark("P9"), mark("P9", session="PM"))  # parked on the 23rd
    await stack.processed()
    stack.at(10, 0, day=dt.date(2026, 12, 15))  # 22 days on: more than a week to go
    await stack.run_due()
    stack.at(9, 0, day=dt.date(2026, 12, 16))  # 23 days on, but registers are not closed
    await stack.run_due()
    assert _parked_alerts(stack) == []

    stack.at(10, 0, day=dt.date(2026, 12, 16))
    await stack.run_due()
    [email] = await emails_about(stack, "will be discarded", 1)
    assert email["To"] == "attendance@millbrook.example"
    text = body(email)
    assert "3 register marks" in text and "(P8, P9)" in text and "2026-12-23" in text
    stack.at(15, 0, day=dt.date(2026, 12, 16))
    await stack.run_due()
    stack.at(10, 0, day=dt.date(2026, 12, 17))
    await stack.run_due()
    await emails_about(stack, "will be discarded", 2)
    assert len(_parked_alerts(stack)) == 2, "once a school day"


def _duplicates(stack: Stack) -> float:
    value = stack.triage.metrics.registry.get_sample_value(
        "triage_events_total", {"outcome": "duplicate"})
    return value or 0.0


async def test_dedup_log_keeps_redeliveries_and_the_years_history_within_retention(
        stack: Stack) -> None:
    """A redelivered mark is still recognised, and the timeline still shows a mark's
    amendments, for the whole retention and never less than the current school year."""
    await stack.put_school(school([pupil("P1")]))
    first = mark("P1", "N")
    amended = mark("P1", "I", recorded=dt.datetime.combine(MONDAY, dt.time(8, 54), tzinfo=LONDON))
    await stack.publish(first, amended)
    await stack.processed()
    stack.triage_settings.received_event_days = 30  # a deployment that keeps it shorter

    stack.clock.advance(dt.timedelta(days=60))  # past the 30 days, same school year
    assert (await stack.triage.housekeeping.run_once())["received_events"] == 0
    await stack.publish(first)
    await stack.processed()
    assert _duplicates(stack) == 1
    history = (await timeline(stack, "P1"))["mark_history"]
    assert [m["code"] for m in history] == ["N", "I"]

    stack.clock.set(dt.datetime(2027, 9, 1, 0, 1, tzinfo=LONDON))  # the next school year
    assert (await stack.triage.housekeeping.run_once())["received_events"] == 2
    assert await _count(stack.triage.engine, received_events) == 0


async def test_dedup_log_is_kept_400_days_by_default(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P1"))
    await stack.processed()
    received = stack.clock.now()
    stack.clock.set(received + dt.timedelta(days=400))
    assert (await stack.triage.housekeeping.run_once())["received_events"] == 0
    stack.clock.advance(dt.timedelta(seconds=1))
    assert (await stack.triage.housekeeping.run_once())["received_events"] == 1


async def test_unmatched_replies_go_after_30_days_and_matched_ones_stay(
        notifier: NotifierService) -> None:
    def reply(n: int, *, matched: bool, days_ago: int) -> dict[str, Any]:
        return {"id": f"reply{n}", "message_sid": f"SM{n}", "school_urn": "123456" if matched
                else None, "from_phone": "+447700900001", "body": "ok", "kind": "reply",
                "matched": matched, "contact_ref": None, "pupil_ids": [], "episodes": [],
                "received_at": START - dt.timedelta(days=days_ago)}

    async with notifier.engine.begin() as conn:
        await conn.execute(insert(replies), [
            reply(1, matched=False, days_ago=31), reply(2, matched=False, days_ago=29),
            reply(3, matched=True, days_ago=400)])
    counts = await notifier.housekeeping.run_once()
    assert counts["unmatched_replies"] == 1
    async with notifier.engine.connect() as conn:
        kept = sorted((await conn.execute(select(replies.c.id))).scalars())
    assert kept == ["reply2", "reply3"]


async def test_purges_run_in_bounded_batches(notifier: NotifierService) -> None:
    from notifier.housekeeping import notifier_purges
    from servicekit.housekeeping import purge

    old = START - dt.timedelta(days=31)
    async with notifier.engine.begin() as conn:
        await conn.execute(insert(replies), [
            {"id": f"reply{n}", "message_sid": f"SM{n}", "school_urn": None,
             "from_phone": "+447700900001", "body": "ok", "kind": "reply", "matched": False,
             "contact_ref": None, "pupil_ids": [], "episodes": [], "received_at": old}
            for n in range(25)])
    deletes: list[str] = []

    def seen(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("DELETE"):
            deletes.append(args[2])

    event.listen(notifier.engine.sync_engine, "before_cursor_execute", seen)
    [unmatched, _] = notifier_purges(notifier.settings, START)
    assert await purge(notifier.engine, unmatched, batch_size=10) == 25
    event.remove(notifier.engine.sync_engine, "before_cursor_execute", seen)
    assert len(deletes) == 3  # 10, 10 and the last 5
    assert await _count(notifier.engine, replies) == 0


def test_dead_letters_are_kept_14_days_and_at_most_100000_per_queue() -> None:
    """RabbitMQ applies the bound as a policy (infra/rabbitmq/definitions.json): queue
    arguments could not be changed on the queues brokers already have."""
    definitions = json.loads((Path(__file__).resolve().parents[1] / "infra" / "rabbitmq"
                              / "definitions.json").read_text(encoding="utf-8"))
    [policy] = [p for p in definitions["policies"] if p["name"] == "dead-letter-retention"]
    assert policy["apply-to"] == "queues" and policy["vhost"] == "/"
    assert policy["definition"] == {"message-ttl": 14 * 24 * 3600 * 1000,
                                    "max-length": 100_000, "overflow": "drop-head"}
    matched = {q["name"] for q in definitions["queues"] if re.search(policy["pattern"], q["name"])}
    assert matched == {topology.EVENTS_DEAD_QUEUE, topology.REQUESTS_DEAD_QUEUE}
