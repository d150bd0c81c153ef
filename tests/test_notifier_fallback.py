"""docs/rules.md "Contact order": the family is tried in priority order until one contact is
reached; when nobody can be, the attendance officer is told, once. Through the real broker, the
real twilio client against the loopback stub, and the SMTP sink; time only moves when told."""

from __future__ import annotations

import datetime as dt

from tests.stack import OFFICER, Stack, family_request, parent

FIRST, SECOND, THIRD = "+447700900001", "+447700900002", "+447700900003"
WAIT = dt.timedelta(minutes=15)  # NotifierSettings.delivery_receipt_wait_seconds default


def _by_phone(notifications: list[dict[str, object]]) -> dict[object, object]:
    return {n["to"]: n["status"] for n in notifications if n["channel"] != "email"}


async def test_unsubscribed_first_contact_is_suppressed_and_the_second_is_texted(
    stack: Stack,
) -> None:
    stack.twilio.reject_number(FIRST, code=21610)
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    await stack.sent(2)

    assert [m["to"] for m in stack.twilio.messages] == [SECOND]
    assert _by_phone(await stack.notifications()) == {FIRST: "suppressed", SECOND: "sent"}
    # The number stays opted out for this school: a later request does not even ask Twilio.
    attempts = len(stack.twilio.attempts)
    later = family_request(stack.clock.now(), parent(1), parent(2), day=dt.date(2026, 11, 24))
    await stack.publish_requests(later)
    await stack.sent(4)
    assert [a["params"]["To"] for a in stack.twilio.attempts[attempts:]] == [SECOND]


async def test_undelivered_text_moves_on_to_the_next_contact(stack: Stack) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    (first,) = await stack.twilio.wait_for_messages(1)
    await stack.sent(1)

    response = await stack.status_callback(first["sid"], "undelivered", error_code=30003)
    assert response.status_code == 204
    texts = await stack.twilio.wait_for_messages(2)
    assert [t["to"] for t in texts] == [FIRST, SECOND]
    await stack.sent(2)
    assert _by_phone(await stack.notifications()) == {FIRST: "undelivered", SECOND: "sent"}


async def test_text_with_no_receipt_moves_on_once_the_wait_is_over(stack: Stack) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    await stack.sent(1)

    stack.clock.advance(WAIT - dt.timedelta(seconds=1))
    await stack.dispatch_due()
    assert [m["to"] for m in stack.twilio.messages] == [FIRST]

    stack.clock.advance(dt.timedelta(seconds=1))
    await stack.dispatch_due()
    await stack.sent(2)
    assert [m["to"] for m in stack.twilio.messages] == [FIRST, SECOND]


async def test_delivered_text_means_the_family_was_reached(stack: Stack) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    (first,) = await stack.twilio.wait_for_messages(1)
    await stack.sent(1)
    assert (await stack.status_callback(first["sid"], "delivered")).status_code == 204

    stack.clock.advance(WAIT * 4)
    await stack.dispatch_due()
    # A late `undelivered` cannot undo `delivered`, nor start the chase again.
    await stack.status_callback(first["sid"], "undelivered")
    await stack.dispatch_due()
    assert [m["to"] for m in stack.twilio.messages] == [FIRST]
    assert _by_phone(await stack.notifications()) == {FIRST: "delivered"}


async def test_email_accepted_by_the_mail_server_counts_as_reaching_the_contact(
    stack: Stack,
) -> None:
    first = parent(1, email="first@example.com", channels=("sms", "email"))
    await stack.publish_requests(family_request(stack.clock.now(), first, parent(2)))
    await stack.sent(2)
    stack.clock.advance(WAIT * 2)
    await stack.dispatch_due()
    assert [m["to"] for m in stack.twilio.messages] == [FIRST]
    assert [e["To"] for e in stack.smtp.messages] == ["first@example.com"]


async def test_family_nobody_can_reach_is_reported_to_the_attendance_officer_once(
    stack: Stack,
) -> None:
    stack.twilio.reject_number(FIRST, code=21211, message="invalid number")
    stack.twilio.reject_number(THIRD, code=21614, message="not a mobile")
    request = family_request(stack.clock.now(), parent(1), parent(2), parent(3))
    await stack.publish_requests(request)
    second = (await stack.twilio.wait_for_messages(1))[0]
    assert second["to"] == SECOND
    await stack.sent(2)
    await stack.status_callback(second["sid"], "undelivered")
    await stack.sent(4)  # the third contact fails, then the officer's email

    (alert,) = await stack.smtp.wait_for(1)
    assert alert["To"] == OFFICER.email
    assert "Sally Smith" in alert["Subject"] and "Millbrook Primary School" in alert["Subject"]
    assert "3 contacts were tried" in alert.get_body(("plain",)).get_content()

    # Duplicate callbacks, a redelivered request and time passing tell nobody again.
    await stack.status_callback(second["sid"], "undelivered")
    await stack.status_callback(second["sid"], "failed")
    await stack.publish_requests(request)
    await stack.requests_processed()
    stack.clock.advance(WAIT * 3)
    await stack.dispatch_due()
    assert len(stack.smtp.messages) == 1
    recorded = await stack.notifications(rule="family_unreachable")
    assert [(n["recipient_role"], n["status"]) for n in recorded] == [
        ("attendance_officer", "sent")]
    assert _by_phone(await stack.notifications(rule="first_day_contact")) == {
        FIRST: "failed", SECOND: "undelivered", THIRD: "failed"}


async def test_forged_undelivered_callback_is_refused_and_moves_nothing_on(stack: Stack) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    (first,) = await stack.twilio.wait_for_messages(1)
    await stack.sent(1)
    before = await stack.notifications()

    forged = await stack.status_callback(first["sid"], "undelivered", auth_token="forged")
    assert forged.status_code == 403
    unsigned = await stack.notifier_api.post(
        "/twilio/status", data={"MessageSid": first["sid"], "MessageStatus": "undelivered"})
    assert unsigned.status_code == 403
    await stack.dispatch_due()
    assert await stack.notifications() == before
    assert len(stack.twilio.attempts) == 1


async def test_chase_survives_a_restart_of_the_notifier(stack: Stack) -> None:
    """The receipt wait is a stored due time, not a sleeping task."""
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    await stack.sent(1)
    await stack.notifier.stop()
    from notifier.app import NotifierService
    stack.notifier = NotifierService(stack.notifier_settings, stack.clock)
    await stack.notifier.start()
    stack.clock.advance(WAIT)
    await stack.dispatch_due()
    await stack.twilio.wait_for_messages(2)
    assert [m["to"] for m in stack.twilio.messages] == [FIRST, SECOND]
