"""Contract §2 "Bad input": an event that is not valid JSON, fails the schema, names an unknown
school or carries an unknown code is dead-lettered to `attendance.events.dead` with the reason in
`x-rejection-reason`, counted in the metrics, and never blocks the events queued behind it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from broker_messages import topology
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from triage.models import marks, received_events

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.stack import Stack

TUESDAY = MONDAY + dt.timedelta(days=1)


def _without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != field}


def _body(event: dict[str, Any] | bytes) -> bytes:
    return event if isinstance(event, bytes) else json.dumps(event).encode()


# Each bad event, and words its rejection reason must contain to name the problem.
BAD_EVENTS: dict[str, tuple[dict[str, Any] | bytes, tuple[str, ...]]] = {
    "invalid JSON": (b'{"schema": "register.mark/v1", "event_id": ', ("Invalid JSON",)),
    "not UTF-8": (
        json.dumps(mark("P1", comment="caf\u00e9"), ensure_ascii=False).encode("latin-1"),
        ("Invalid JSON", "unicode"),
    ),
    "a JSON array": (json.dumps([mark("P1")]).encode(), ("should be an object",)),
    "missing field": (_without(mark("P1"), "pupil_id"), ("pupil_id", "Field required")),
    "wrong session": ({**mark("P1"), "session": "EVE"}, ("session", "'AM' or 'PM'")),
    "impossible date": ({**mark("P1"), "date": "2026-02-30"}, ("date", "valid date")),
    "naive recorded_at": (
        {**mark("P1"), "recorded_at": "2026-11-23T08:52:10"}, ("recorded_at", "timezone"),
    ),
    "event_id too long": (mark("P1", event_id="E" * 65), ("event_id", "at most 64")),
    "control character": (
        mark("P1", comment="rang\x07 in"), ("comment", "control or bidirectional"),
    ),
    "RTL override": (
        mark("P1", comment="ill \u202etxt.exe"), ("comment", "control or bidirectional"),
    ),
    "unknown code": (mark("P1", "QQ"), ("code", "unknown register code 'QQ'")),
    "unknown school": (mark("P1", urn="999999"), ("unknown school_urn", "999999")),
    "date in the future": (
        mark("P1", day=TUESDAY, recorded=dt.datetime(2026, 11, 23, 8, 40, tzinfo=LONDON)),
        ("future", "2026-11-24"),
    ),
}


def _header(message: Any, name: str) -> str:
    value = (message.headers or {}).get(name)
    return value.decode() if isinstance(value, bytes) else str(value)


async def _rejected_counts(stack: Stack) -> dict[str, float]:
    response = await stack.triage_api.get("/metrics")
    assert response.status_code == 200
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "triage_events_rejected"
        for sample in family.samples
        if sample.name == "triage_events_rejected_total"
    }


async def test_each_bad_event_is_dead_lettered_with_its_reason_and_good_ones_still_go_through(
    stack: Stack,
) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await stack.publish(*(event for event, _ in BAD_EVENTS.values()))
    await stack.publish(mark("P1", "N"))
    await stack.processed()

    dead = await stack.dead_letters(expected=len(BAD_EVENTS))
    reasons = {message.body: _header(message, topology.REJECTION_REASON_HEADER)
               for message in dead}
    for case, (event, words) in BAD_EVENTS.items():
        reason = reasons.get(_body(event))
        assert reason is not None, f"{case}: not dead-lettered"
        for word in words:
            assert word in reason, f"{case}: reason {reason!r} does not mention {word!r}"

    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900001"]
    async with stack.triage.engine.connect() as conn:
        accepted = (await conn.execute(select(received_events.c.event_id))).scalars().all()
    assert len(accepted) == 1, "only the good event is recorded"


async def test_rejections_are_counted_by_kind_of_problem(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(b"not json", mark("P1", "QQ"), mark("P1", urn="999999"),
                        mark("P1", urn="888888"),
                        mark("P1", day=TUESDAY,
                             recorded=dt.datetime(2026, 11, 23, 7, 59, tzinfo=LONDON)))
    await stack.processed()
    await stack.dead_letters(expected=5)
    # Labels name the kind of problem, never the data (URNs, dates): the series stay bounded.
    assert await _rejected_counts(stack) == {
        "invalid event": 2.0, "unknown school_urn": 2.0, "date in the future": 1.0,
    }


async def test_legacy_codes_are_accepted_and_stored_as_their_2024_codes(stack: Stack) -> None:
    """docs/rules.md: H, J and Y from old MIS exports keep the meaning they had when recorded:
    J (interview) was an approved educational activity, counted as attending."""
    await stack.put_school(school([pupil("P1"), pupil("P2", "Tom"), pupil("P3", "Ada")]))
    await stack.publish(mark("P1", "H"), mark("P2", "J"), mark("P3", "Y"))
    await stack.processed()
    async with stack.triage.engine.connect() as conn:
        stored = dict((await conn.execute(select(marks.c.pupil_id, marks.c.code))).all())
    assert stored == {"P1": "C", "P2": "B", "P3": "Y1"}
    assert await _rejected_counts(stack) == {}


async def test_unreadable_contact_request_is_dead_lettered_by_the_notifier(stack: Stack) -> None:
    await stack.publish_requests(b"{not json", b'{"schema": "contact.request/v1"}')
    await stack.requests_processed()
    dead = await stack.dead_letters(topology.REQUESTS_DEAD_QUEUE, expected=2)
    reasons = {message.body: _header(message, topology.REJECTION_REASON_HEADER)
               for message in dead}
    assert "Invalid JSON" in reasons[b"{not json"]
    assert "request_id" in reasons[b'{"schema": "contact.request/v1"}']
    assert await stack.notifications() == []
