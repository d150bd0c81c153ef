"""What the staff app reads from the notifier (docs/contract.md §4): the notification log with
each message's text, filtered by request, time and order; replies by pupil and time; and the
social worker's and Virtual School's alert, with what they need and a link to the pupil."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest

from tests.factories import MONDAY, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.scenarios import emails_about, register
from tests.stack import OFFICER, Stack, family_request, parent

STAFF_URL = "https://staff.example/app"
WORKER = {"name": "A Worker", "email": "a.worker@la.example", "phone": "+447700900200"}
TUESDAY, WEDNESDAY = MONDAY + dt.timedelta(days=1), MONDAY + dt.timedelta(days=2)


@pytest.fixture
async def linked_stack(amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub,
                       smtp: SmtpSink, tmp_path: Any) -> AsyncIterator[Stack]:
    """The stack with NOTIFIER_STAFF_URL set."""
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"staff_url": STAFF_URL}) as running:
        yield running


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


async def _listed(stack: Stack, path: str, **query: str) -> list[dict[str, Any]]:
    response = await stack.notifier_api.get(path, params=query)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_notifications_carry_the_message_and_filter_by_request_time_and_order(
        stack: Stack) -> None:
    # Nobody to alert when the texts go unreceipted: only these rows are listed.
    monday = family_request(stack.clock.now(), parent(1), recipients=(OFFICER,),
                            unreachable=())
    await stack.publish_requests(monday)
    await stack.requests_processed()
    await stack.sent(2)
    stack.at(9, 0, day=TUESDAY)
    later = stack.clock.now()
    tuesday = family_request(later, parent(1), day=TUESDAY, unreachable=())
    await stack.publish_requests(tuesday)
    await stack.requests_processed()
    await stack.sent(3)

    rows = await _listed(stack, "/api/v1/notifications", school_urn="123456")
    assert [r["request_id"] for r in rows] == [monday.request_id] * 2 + [tuesday.request_id]
    email = next(r for r in rows if r["channel"] == "email")
    text = next(r for r in rows if r["channel"] == "sms")
    assert email["recipient_role"] == "attendance_officer" and email["language"] == "en"
    assert "Millbrook Primary School" in email["subject"] and "Sally" in email["body"]
    assert text["subject"] is None and "Sally" in text["body"]
    assert text["status"] == "sent" and text["error"] is None
    assert dt.datetime.fromisoformat(text["due_at"]) == monday.requested_at
    assert dt.datetime.fromisoformat(text["sent_at"]) >= monday.requested_at

    by_request = await _listed(stack, "/api/v1/notifications", request_id=tuesday.request_id)
    assert [r["request_id"] for r in by_request] == [tuesday.request_id]
    since = await _listed(stack, "/api/v1/notifications", since=_iso(later))
    assert [r["request_id"] for r in since] == [tuesday.request_id]
    newest = await _listed(stack, "/api/v1/notifications", order="desc", limit="2")
    assert [r["id"] for r in newest] == [r["id"] for r in reversed(rows)][:2]
    assert await _listed(stack, "/api/v1/notifications",
                         since=_iso(later + dt.timedelta(seconds=1))) == []


async def test_bad_notification_and_reply_queries_are_refused_listing_each_problem(
        stack: Stack) -> None:
    response = await stack.notifier_api.get("/api/v1/notifications", params={
        "since": "2026-11-23T09:30:00", "order": "newest", "request_id": "x" * 201})
    assert response.status_code == 422, response.text
    problems = {problem["loc"][-1] for problem in response.json()["detail"]}
    assert problems == {"since", "order", "request_id"}, "a timestamp must say its offset"
    response = await stack.notifier_api.get("/api/v1/replies", params={
        "since": "yesterday", "pupil_id": "P" * 65})
    assert response.status_code == 422, response.text
    assert {problem["loc"][-1] for problem in response.json()["detail"]} == {"since",
                                                                             "pupil_id"}


async def test_replies_filter_by_pupil_and_time(stack: Stack) -> None:
    sally = family_request(stack.clock.now(), parent(1, "+447700900001"))
    tom = family_request(stack.clock.now(), parent(1, "+447700900002", pupil_id="P2"),
                         pupils=(("P2", "Tom"),))
    await stack.publish_requests(sally, tom)
    await stack.requests_processed()
    await stack.sent(2)
    stack.at(10, 0)
    assert (await stack.inbound_sms("+447700900001", "she is ill")).status_code == 200
    stack.at(11, 0)
    later = stack.clock.now()
    assert (await stack.inbound_sms("+447700900002", "he is ill")).status_code == 200

    everything = await _listed(stack, "/api/v1/replies", school_urn="123456")
    assert [r["body"] for r in everything] == ["he is ill", "she is ill"]
    for pupil_id, body in (("P1", "she is ill"), ("P2", "he is ill")):
        (reply,) = await _listed(stack, "/api/v1/replies", pupil_id=pupil_id)
        assert reply["body"] == body and reply["pupil_ids"] == [pupil_id]
    (recent,) = await _listed(stack, "/api/v1/replies", since=_iso(later))
    assert recent["body"] == "he is ill"
    assert await _listed(stack, "/api/v1/replies", pupil_id="P1", since=_iso(later)) == []


def _about(emails: list[EmailMessage], day: dt.date) -> EmailMessage:
    (email,) = [e for e in emails
                if f"{day:%A} {day.day} {day:%B %Y}" in e.get_body(("plain",)).get_content()]
    return email


async def test_social_workers_alert_says_what_was_done_and_links_to_the_pupil(
        linked_stack: Stack) -> None:
    stack = linked_stack
    await stack.put_school(school([pupil("P1", "Sally", social_worker=WORKER)]))
    await register(stack, "P1", MONDAY)
    monday = _about(await emails_about(stack, "unexplained absence", 1), MONDAY)
    text = monday.get_body(("plain",)).get_content()
    assert monday["To"] == "a.worker@la.example"
    assert ("Millbrook Primary School: Sally Smith (P1) has an unexplained absence on Monday "
            "23 November 2026 (AM session)") in text
    assert "Messages to the family during this absence: 1" in text, "the first-day text goes"
    assert "Home visit: none planned" in text
    assert ("if you know where the child is or why they are absent, call the school, today, "
            "Monday 23 November 2026.") in text
    assert "Whom to call at the school: R Baish (attendance officer), 01235 764822" in text
    link = f"{STAFF_URL}/pupils/123456/P1?date=2026-11-23"
    assert f"View Sally Smith in the staff app: {link}" in text
    assert f'<a href="{link}">' in monday.get_body(("html",)).get_content()

    await register(stack, "P1", TUESDAY)
    await register(stack, "P1", WEDNESDAY, sessions=("AM", "PM"))
    wednesday = _about(await emails_about(stack, "unexplained absence", 3), WEDNESDAY)
    text = wednesday.get_body(("plain",)).get_content()
    assert "(AM and PM sessions)" in text
    assert "Messages to the family during this absence: 1" in text, "one first day in it"
    assert "Home visit: planned" in text, "day 3: the visit falls due with the alert"
    assert f"{STAFF_URL}/pupils/123456/P1?date=2026-11-25" in text
    (row,) = await stack.notifications(rule="social_worker_unexplained",
                                       since=_iso(stack.clock.now()))
    assert row["body"] == text.replace("\r\n", "\n").strip(), "staff read what was sent"


async def test_without_a_staff_url_the_alerts_carry_no_link(stack: Stack) -> None:
    document = school([pupil("P1", "Sally", social_worker=WORKER, looked_after=True)])
    document["local_authority"] = {"name": "Oxfordshire",
                                   "attendance_team_email": "attendance@la.example",
                                   "virtual_school_email": "virtualschool@la.example"}
    await stack.put_school(document)
    await register(stack, "P1", MONDAY)
    alerts = await emails_about(stack, "unexplained absence", 2)
    assert sorted(e["To"] for e in alerts) == ["a.worker@la.example", "virtualschool@la.example"]
    for email in alerts:
        text = email.get_body(("plain",)).get_content()
        assert "Messages to the family during this absence: 1" in text
        assert "Whom to call at the school: R Baish (attendance officer), 01235 764822" in text
        assert "staff app" not in text and "http" not in text
        assert "href" not in email.get_body(("html",)).get_content()
