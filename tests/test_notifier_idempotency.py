"""The notifier's exactly-once effect over at-least-once delivery: a republished request, a
provider that fails and recovers, a permanent refusal, and Twilio's status callbacks
(docs/contract.md §4, §5)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
from broker_messages.contact import Channel, ContactRequest, PupilRef, Recipient, School
from notifier.dispatch import Dispatcher
from notifier.metrics import NotifierMetrics
from notifier.migrations import upgrade
from notifier.models import notifications
from servicekit.clock import FrozenClock
from servicekit.database import make_engine
from sqlalchemy import insert
from twilio.request_validator import RequestValidator

from tests.factories import MONDAY
from tests.stack import PUBLIC_BASE_URL, Stack

PARENT_PHONE = "+447700900001"
PARENT_EMAIL = "jane@example.com"


def first_day_request(stack: Stack, *channels: Channel) -> ContactRequest:
    return ContactRequest(
        request_id="first_day_contact:123456:P1:2026-11-23",
        rule="first_day_contact",
        school=School(urn="123456", name="Millbrook Primary School", phone="+441235764822"),
        date=MONDAY,
        pupils=(PupilRef(pupil_id="P1", given_name="Sally", family_name="Smith"),),
        recipients=(Recipient(role="parent", ref="P1/contact/1", name="Jane Smith",
                              phone=PARENT_PHONE, email=PARENT_EMAIL,
                              channels=channels or ("sms", "email")),),
        requested_at=stack.clock.now(),
    )


async def _status_callback(stack: Stack, sid: str, status: str, *,
                           auth_token: str | None = None) -> httpx.Response:
    """A message status callback as Twilio posts it, signed with the account's auth token
    (or with `auth_token`, to forge one)."""
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": stack.twilio.account_sid, "To": PARENT_PHONE,
              "ApiVersion": "2010-04-01"}
    signature = RequestValidator(auth_token or stack.twilio.auth_token).compute_signature(
        PUBLIC_BASE_URL + "/twilio/status", params)
    return await stack.notifier_api.post("/twilio/status", data=params,
                                         headers={"X-Twilio-Signature": signature})


async def _sms_sent(stack: Stack) -> tuple[str, dict[str, object]]:
    """Send one first-day text and return the provider's id and our notification."""
    await stack.publish_requests(first_day_request(stack, "sms"))
    await stack.sent(1)
    (message,) = await stack.twilio.wait_for_messages(1)
    (notification,) = await stack.notifications(pupil_id="P1")
    assert notification["status"] == "sent"
    assert message["status_callback"] == PUBLIC_BASE_URL + "/twilio/status"
    return message["sid"], notification


async def test_request_delivered_twice_texts_and_emails_the_parent_once(stack: Stack) -> None:
    request = first_day_request(stack)
    await stack.publish_requests(request, request)
    await stack.requests_processed()
    await stack.sent(2)

    assert [t["to"] for t in stack.twilio.messages] == [PARENT_PHONE]
    assert [e["To"] for e in stack.smtp.messages] == [PARENT_EMAIL]
    recorded = await stack.notifications(school_urn="123456")
    assert sorted((n["channel"], n["status"]) for n in recorded) == [
        ("email", "sent"), ("sms", "sent")]
    assert stack.notifier.dispatcher is not None and stack.notifier.dispatcher.settled == 2


async def test_request_repeated_after_it_was_sent_sends_nothing_more(stack: Stack) -> None:
    request = first_day_request(stack, "sms")
    await stack.publish_requests(request)
    await stack.sent(1)
    await stack.publish_requests(request)
    await stack.requests_processed()
    assert len(await stack.notifications()) == 1
    assert len(stack.twilio.attempts) == 1


async def test_twilio_failing_twice_then_recovering_sends_exactly_one_text(stack: Stack) -> None:
    stack.twilio.fail_next(2, 500)
    await stack.publish_requests(first_day_request(stack, "sms"))
    await stack.sent(1)

    assert [a["status"] for a in stack.twilio.attempts] == [500, 500, 201]
    (message,) = stack.twilio.messages
    (notification,) = await stack.notifications(pupil_id="P1")
    assert notification["status"] == "sent"
    assert notification["provider_id"] == message["sid"]


async def test_invalid_number_fails_at_once_and_is_not_retried(stack: Stack) -> None:
    """Twilio 21211 (invalid 'To' number) cannot be fixed by trying again."""
    stack.twilio.reject_number(PARENT_PHONE, status=400, code=21211,
                               message="The 'To' number is not a valid phone number.")
    await stack.publish_requests(first_day_request(stack, "sms"))
    await stack.sent(1)

    assert len(stack.twilio.attempts) == 1
    assert stack.twilio.messages == []
    (notification,) = await stack.notifications(pupil_id="P1")
    assert notification["status"] == "failed"
    assert notification["provider_id"] is None


async def test_delivery_callback_marks_the_text_delivered_and_a_late_sent_cannot_undo_it(
    stack: Stack,
) -> None:
    sid, _ = await _sms_sent(stack)

    response = await _status_callback(stack, sid, "delivered")
    assert response.status_code == 204
    assert [n["status"] for n in await stack.notifications(pupil_id="P1")] == ["delivered"]

    # Twilio does not promise callback order: a `sent` arriving after `delivered` is stale.
    assert (await _status_callback(stack, sid, "sent")).status_code == 204
    assert (await _status_callback(stack, sid, "delivered")).status_code == 204
    assert [n["status"] for n in await stack.notifications(pupil_id="P1")] == ["delivered"]


async def test_forged_status_callback_is_refused_and_changes_nothing(stack: Stack) -> None:
    sid, before = await _sms_sent(stack)
    stack.clock.advance(dt.timedelta(minutes=1))

    forged = await _status_callback(stack, sid, "failed", auth_token="not-the-auth-token")
    assert forged.status_code == 403
    unsigned = await stack.notifier_api.post(
        "/twilio/status", data={"MessageSid": sid, "MessageStatus": "failed"})
    assert unsigned.status_code == 403
    assert await stack.notifications(pupil_id="P1") == [before]
    # The genuine callback still works afterwards.
    assert (await _status_callback(stack, sid, "failed")).status_code == 204
    assert [n["status"] for n in await stack.notifications(pupil_id="P1")] == ["failed"]


async def test_a_process_never_takes_its_own_claims_for_abandoned(tmp_path: Path) -> None:
    """The dispatcher claims more while earlier rows still wait for the rate limit, and those
    may wait past the claim expiry: only another process (or this one after a restart) may
    take such a claim back, and then as uncertain (looked up at the provider first)."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")
    await upgrade(engine)
    start = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)
    clock = FrozenClock(start)
    async with engine.begin() as conn:
        await conn.execute(insert(notifications), [
            {"id": f"n{n}", "request_id": f"r{n}", "rule": "first_day_contact",
             "school_urn": "123456", "pupil_ids": ["P1"], "recipient_role": "contact",
             "recipient_ref": f"ref{n}", "channel": "sms", "to": "+447700900001",
             "body": "text", "status": "pending", "attempts": 0, "due_at": start,
             "created_at": start + dt.timedelta(seconds=n), "updated_at": start}
            for n in (1, 2)])

    def dispatcher() -> Dispatcher:
        return Dispatcher(engine, clock, {}, NotifierMetrics(), attempts=1, initial_wait=0.0,
                          chase=None,  # type: ignore[arg-type]  # claims only
                          claim_expiry=dt.timedelta(minutes=10))

    this, other = dispatcher(), dispatcher()
    try:
        [first] = await this._claim(1)
        clock.set(start + dt.timedelta(hours=1))  # `first` still waits its turn
        [second] = await this._claim(1)
        assert (first.id, second.id) == ("n1", "n2"), "its own claim was taken back"
        clock.set(start + dt.timedelta(hours=2))
        recovered = await other._claim(5)  # another process: both claims look abandoned
        assert {row.id for row in recovered} == {"n1", "n2"}
        assert all(row.uncertain for row in recovered)
    finally:
        await engine.dispose()
