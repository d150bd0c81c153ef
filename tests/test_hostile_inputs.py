"""A corpus of hostile events and API bodies. Each gets a clear 4xx or a dead-letter with a
reason; none crashes a service, reaches a parent or changes stored state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from broker_messages import topology
from sqlalchemy import func, select
from triage.models import marks, parked_events, pupils, received_events, schools

from tests.factories import URN, contact, mark, pupil, school
from tests.stack import Stack

NESTED = "[" * 5000 + "]" * 5000


def _event(**changes: Any) -> dict[str, Any]:
    return {**mark("P1", "N"), **changes}


HOSTILE_EVENTS: dict[str, bytes] = {
    "empty body": b"",
    "whitespace": b"   \n",
    "null": b"null",
    "number": b"42",
    "string": b'"register.mark/v1"',
    "truncated JSON": b'{"schema": "register.mark/v1"',
    "deeply nested array": NESTED.encode(),
    "deeply nested object": ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
    "binary garbage": bytes(range(256)),
    "UTF-16": json.dumps(_event()).encode("utf-16"),
    "unknown schema": json.dumps(_event(schema="register.mark/v9")).encode(),
    "schema missing": json.dumps({k: v for k, v in _event().items() if k != "schema"}).encode(),
    "event_id empty": json.dumps(_event(event_id="")).encode(),
    "event_id with spaces": json.dumps(_event(event_id="a b")).encode(),
    "event_id is a number": json.dumps(_event(event_id=12345)).encode(),
    "urn with letters": json.dumps(_event(school_urn="12345X")).encode(),
    "urn too short": json.dumps(_event(school_urn="123")).encode(),
    "pupil_id with newline": json.dumps(_event(pupil_id="P1\nP2")).encode(),
    "pupil_id 10k chars": json.dumps(_event(pupil_id="P" * 10_000)).encode(),
    "date 2026-02-30": json.dumps(_event(date="2026-02-30")).encode(),
    "date 2026-13-01": json.dumps(_event(date="2026-13-01")).encode(),
    "date as a timestamp number": json.dumps(_event(date=1795000000)).encode(),
    "date far in the future": json.dumps(_event(date="2099-01-01")).encode(),
    "session lowercase nonsense": json.dumps(_event(session="morning")).encode(),
    "code lowercase n": json.dumps(_event(code="n")).encode(),
    "code SQL": json.dumps(_event(code="N'; DROP TABLE marks;--")).encode(),
    "code template": json.dumps(_event(code="{{7*7}}")).encode(),
    "code null": json.dumps(_event(code=None)).encode(),
    "recorded_at garbage": json.dumps(_event(recorded_at="yesterday")).encode(),
    "recorded_at in 2099": json.dumps(_event(recorded_at="2099-01-01T08:00:00+00:00")).encode(),
    "minutes_late negative": json.dumps(_event(minutes_late=-5)).encode(),
    "minutes_late huge": json.dumps(_event(minutes_late=10**12)).encode(),
    "comment 1 MB": json.dumps(_event(comment="x" * 1_000_000)).encode(),
    "comment with NUL": json.dumps(_event(comment="a\x00b")).encode(),
    "comment with RTL isolate": json.dumps(_event(comment="\u2067evil\u2069")).encode(),
    "removal without date": json.dumps({"schema": "pupil.removed/v1", "event_id": "r1",
                                        "school_urn": URN, "pupil_id": "P1"}).encode(),
}

SCHOOL_PATH = f"/api/v1/schools/{URN}"


def _doc(**changes: Any) -> dict[str, Any]:
    return {**school([pupil("P1")]), **changes}


def _with_pupil(**changes: Any) -> dict[str, Any]:
    return _doc(pupils=[{**pupil("P1"), **changes}])


def _with_contact(**changes: Any) -> dict[str, Any]:
    return _with_pupil(contacts=[{**contact(1), **changes}])


HOSTILE_BODIES: dict[str, tuple[str, str, Any]] = {
    "school: not JSON": ("PUT", SCHOOL_PATH, b"{urn: 1}"),
    "school: JSON array": ("PUT", SCHOOL_PATH, []),
    "school: deeply nested": ("PUT", SCHOOL_PATH, NESTED.encode()),
    "school: empty object": ("PUT", SCHOOL_PATH, {}),
    "school: urn mismatch": ("PUT", SCHOOL_PATH, _doc(urn="654321")),
    "school: no terms": ("PUT", SCHOOL_PATH, _doc(calendar={"terms": []})),
    "school: term ends before it starts": (
        "PUT", SCHOOL_PATH, _doc(calendar={"terms": [{"start": "2026-12-18", "end": "2026-09-03"}]})),
    "school: closure 2026-02-30": (
        "PUT", SCHOOL_PATH,
        _doc(calendar={"terms": [{"start": "2026-09-03", "end": "2026-12-18"}],
                       "closures": ["2026-02-30"]})),
    "school: unknown timezone": ("PUT", SCHOOL_PATH, _doc(timezone="Mars/Olympus")),
    "school: unknown policy key": ("PUT", SCHOOL_PATH, _doc(policy={"text_everyone": True})),
    "school: threshold above 1": ("PUT", SCHOOL_PATH, _doc(policy={"severe_at": 5})),
    "school: quiet hours nonsense": ("PUT", SCHOOL_PATH, _doc(policy={"quiet_hours": "late"})),
    "school: not_before 25:00": (
        "PUT", SCHOOL_PATH, _doc(policy={"first_day_contact": {"not_before": "25:00"}})),
    # National formats are accepted (and stored as E.164); a number too short to dial is not.
    "school: school phone too short": ("PUT", SCHOOL_PATH, _doc(phone="01235 764")),
    "contact: phone too short": ("PUT", SCHOOL_PATH, _with_contact(phone="07700 9000")),
    "contact: phone with letters": ("PUT", SCHOOL_PATH, _with_contact(phone="+44770090000A")),
    "contact: email without domain": ("PUT", SCHOOL_PATH, _with_contact(email="jane@")),
    "contact: email header injection": (
        "PUT", SCHOOL_PATH, _with_contact(email="jane@example.com\r\nBcc: all@example.com")),
    "contact: priority zero": ("PUT", SCHOOL_PATH, _with_contact(priority=0)),
    "contact: name with RTL override": ("PUT", SCHOOL_PATH, _with_contact(name="Jane \u202eSmith")),
    "contact: name with control char": ("PUT", SCHOOL_PATH, _with_contact(name="Jane\x1bSmith")),
    "pupil: name with newline": ("PUT", SCHOOL_PATH, _with_pupil(given_name="Sally\nClick here")),
    "pupil: id with slash": ("PUT", SCHOOL_PATH, _with_pupil(id="../P1")),
    "pupil: year group as text": ("PUT", SCHOOL_PATH, _with_pupil(year_group="three")),
    "pupil: duplicate ids": ("PUT", SCHOOL_PATH, _doc(pupils=[pupil("P1"), pupil("P1")])),
    "pupil: 10k char name": ("PUT", SCHOOL_PATH, _with_pupil(given_name="S" * 10_000)),
    "events: not JSON": ("POST", "/api/v1/events", b"not json"),
    "events: number": ("POST", "/api/v1/events", 7),
    "events: deeply nested": ("POST", "/api/v1/events", NESTED.encode()),
    "events: bad date": ("POST", "/api/v1/events", _event(date="2026-02-30")),
    "tasks: complete with empty outcome": ("POST", "/api/v1/tasks/1/complete", {"outcome": ""}),
    "tasks: id not a number": ("POST", "/api/v1/tasks/abc/complete", {"outcome": "visited"}),
    "tasks: bad status filter": ("GET", f"/api/v1/tasks?school_urn={URN}&status=everything", None),
}


async def _row_counts(stack: Stack) -> dict[str, int]:
    async with stack.triage.engine.connect() as conn:
        return {
            table.name: int((await conn.execute(select(func.count()).select_from(table)))
                            .scalar_one())
            for table in (schools, pupils, marks, received_events, parked_events)
        }


def test_the_corpus_has_at_least_fifty_hostile_inputs() -> None:
    assert len(HOSTILE_EVENTS) + len(HOSTILE_BODIES) >= 50


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_hostile_events_are_dead_lettered_with_a_reason_and_change_nothing(
    stack: Stack,
) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    before = await _row_counts(stack)
    await stack.publish(*HOSTILE_EVENTS.values())
    await stack.processed()
    dead = await stack.dead_letters(expected=len(HOSTILE_EVENTS))
    reasons = [(m.headers or {}).get(topology.REJECTION_REASON_HEADER) for m in dead]
    assert len(dead) == len(HOSTILE_EVENTS) and all(reasons), reasons
    assert await _row_counts(stack) == before
    stack.at(9, 30)
    assert await stack.run_due() == 0
    assert stack.twilio.attempts == [] and (await stack.triage_api.get("/healthz")).is_success


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_hostile_api_bodies_get_a_clear_4xx_and_change_nothing(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    before = await _row_counts(stack)
    for name, (method, path, body) in HOSTILE_BODIES.items():
        content = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        response = await stack.triage_api.request(
            method, path, content=content, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert response.json().get("detail"), (name, "the error says what is wrong")
    assert await _row_counts(stack) == before
    assert stack.triage.consumer is not None
    assert stack.triage.consumer.settled == 0, "nothing hostile was published"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_template_injection_in_a_name_is_sent_as_plain_text(stack: Stack) -> None:
    """A name is data, never template code; in HTML email it is escaped."""
    await stack.put_school(school([pupil("P1", given_name="{{ 7*7 }}<b>Sally</b>",
                                         contacts=[contact(1, name="<script>x</script>")])]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    text = (await stack.twilio.wait_for_messages(1))[0]["body"]
    email = (await stack.smtp.wait_for(1))[0]
    html = email.get_body(("html",)).get_content()
    assert "{{ 7*7 }}" in text and "49" not in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>Sally</b>" not in html and "&lt;b&gt;Sally&lt;/b&gt;" in html
