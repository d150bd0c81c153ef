"""Input that used to pass validation and then break things: each is now refused at the edge
with a clear 4xx naming the field, or dead-lettered with its reason on the first delivery
(docs/security.md "Edges and data at rest")."""

from __future__ import annotations

from typing import Any

import pytest
from broker_messages import topology
from sqlalchemy import select
from triage.models import pupils

from tests.factories import contact, mark, pupil, school
from tests.stack import Stack

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _fields(response: Any) -> list[list[Any]]:
    return [problem["loc"] for problem in response.json()["detail"]]


@sqlite_only
@pytest.mark.parametrize("name", ["Jane\u2028Smith", "Jane\u2029Smith", "Jane \u200fSmith",
                                  "Jane \u061cSmith"])
async def test_a_name_with_a_line_separator_or_bidi_mark_is_refused_naming_the_field(
        stack: Stack, name: str) -> None:
    document = school([pupil("P1", contacts=[contact(1, name=name)])])
    response = await stack.put_school(document)
    assert response.status_code == 422, response.text
    assert ["body", "pupils", 0, "contacts", 0, "name"] in _fields(response)
    response = await stack.put_school(school([pupil("P1", given_name=name)]))
    assert ["body", "pupils", 0, "given_name"] in _fields(response)


@sqlite_only
@pytest.mark.parametrize("email", ["x(y)@a.example", "g:evil@attacker.example",
                                   "Jane <jane@home.example>", '"jane"@home.example',
                                   "jane@[127.0.0.1]"])
async def test_an_email_a_validator_would_not_deliver_as_written_is_refused(
        stack: Stack, email: str) -> None:
    response = await stack.put_school(school([pupil("P1", contacts=[contact(1, email=email)])]))
    assert response.status_code == 422, response.text
    assert ["body", "pupils", 0, "contacts", 0, "email"] in _fields(response)


@sqlite_only
async def test_a_roster_upload_without_pupils_is_refused_and_takes_nobody_off_roll(
        stack: Stack) -> None:
    assert (await stack.put_school(school([pupil("P1")]))).status_code == 200
    without_pupils = {k: v for k, v in school([]).items() if k != "pupils"}
    response = await stack.put_school(without_pupils)
    assert response.status_code == 422 and ["body", "pupils"] in _fields(response)
    async with stack.triage.engine.connect() as conn:
        on_roll = (await conn.execute(select(pupils.c.on_roll)
                                      .where(pupils.c.pupil_id == "P1"))).scalar_one()
    assert on_roll


@sqlite_only
async def test_a_mark_dated_in_year_one_is_refused_at_the_api_naming_the_date(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    response = await stack.post_events({**mark("P1"), "date": "0001-03-01"})
    # The loc of a field of an event carries its schema (`["body", "register.mark/v1", …]`).
    assert response.status_code == 422 and ["date"] == _fields(response)[0][-1:]
    recorded_early = {**mark("P1"), "recorded_at": "0001-03-01T08:00:00+00:00"}
    response = await stack.post_events(recorded_early)
    assert response.status_code == 422 and ["recorded_at"] == _fields(response)[0][-1:]


@sqlite_only
async def test_a_mark_dated_in_year_one_is_dead_lettered_on_its_first_delivery(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish({**mark("P1"), "date": "0001-03-01"})
    await stack.processed()
    [dead] = await stack.dead_letters()
    reason = str((dead.headers or {}).get(topology.REJECTION_REASON_HEADER))
    assert reason.startswith("invalid event:") and "date" in reason, reason


async def test_the_same_event_id_with_other_content_is_dead_lettered_not_dropped(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    first = mark("P1", "N", event_id="mis-1")
    await stack.publish(first)
    await stack.processed()
    # The same content again is a harmless duplicate; other content under its id is not.
    await stack.publish(first, {**first, "code": "/"})
    await stack.processed()
    [dead] = await stack.dead_letters()
    reason = str((dead.headers or {}).get(topology.REJECTION_REASON_HEADER))
    assert reason.startswith("event_id reused:"), reason
    assert b'"/"' in dead.body


async def test_the_same_event_id_with_other_content_is_refused_at_the_api(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    first = {**mark("P1", "N", event_id="mis-2"), "source": "mis"}
    assert (await stack.post_events(first)).status_code == 202
    await stack.processed()
    assert (await stack.post_events(first)).status_code == 202, "a repeat stays harmless"
    await stack.processed()
    response = await stack.post_events({**first, "code": "/"})
    assert response.status_code == 422 and ["body", "event_id"] in _fields(response)


@sqlite_only
async def test_two_contents_under_one_event_id_in_one_batch_are_not_silently_merged(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    first = mark("P1", "N", event_id="mis-3")
    await stack.publish(first, {**first, "code": "/"})
    await stack.processed()
    [dead] = await stack.dead_letters()
    assert str((dead.headers or {}).get(topology.REJECTION_REASON_HEADER)).startswith(
        "event_id reused:")


@sqlite_only
@pytest.mark.parametrize("field", ["MessageSid", "SmsSid"])
async def test_a_signed_inbound_with_a_huge_message_sid_gets_400_naming_it(
        stack: Stack, field: str) -> None:
    sid = "SM" + "a" * 4998
    params = {"MessageSid": "SM" + "b" * 32, "SmsSid": "SM" + "b" * 32, field: sid,
              "AccountSid": stack.twilio.account_sid, "From": "+447700900001", "Body": "ok"}
    response = await stack.twilio_webhook("/twilio/inbound", params)
    assert response.status_code == 400, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]


@sqlite_only
async def test_a_signed_status_callback_with_a_huge_call_sid_gets_400(stack: Stack) -> None:
    response = await stack.status_callback("CA" + "c" * 4998, "completed")
    assert response.status_code == 400 and response.json()["detail"][0]["loc"] == [
        "body", "CallSid"]

