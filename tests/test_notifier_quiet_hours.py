"""docs/rules.md "Quiet hours": family texts and calls due inside quiet hours or on a non-school
day are held until the next school day's end of quiet hours; email and professional
safeguarding alerts are not held."""

from __future__ import annotations

import datetime as dt

import pytest
from broker_messages.contact import DeliveryWindow, Recipient
from notifier.quiet_hours import next_send_time

from tests.factories import LONDON
from tests.stack import Stack, family_request, parent

# Friday 20 November 2026 is a closure; Monday 23 to Friday 27 are school days.
WINDOW = DeliveryWindow(quiet_hours="20:00-08:00", school_days=(
    dt.date(2026, 11, 19), dt.date(2026, 11, 23), dt.date(2026, 11, 24)))


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=LONDON)


@pytest.mark.parametrize(("now", "opens"), [
    (local(23, 7, 30), local(23, 8, 0)),      # before school: the same morning
    (local(23, 8, 0), local(23, 8, 0)),       # quiet hours end at 08:00 exactly
    (local(23, 19, 59), local(23, 19, 59)),   # still allowed
    (local(23, 20, 0), local(24, 8, 0)),      # evening: the next school day
    (local(19, 21, 0), local(23, 8, 0)),      # Thursday night, Friday closure, weekend
    (local(21, 12, 0), local(23, 8, 0)),      # Saturday noon
    (local(24, 22, 0), local(25, 8, 0)),      # past the days triage sent: weekdays
])
def test_next_send_time(now: dt.datetime, opens: dt.datetime) -> None:
    assert next_send_time(now.astimezone(dt.UTC), WINDOW) == opens.astimezone(dt.UTC)


def test_quiet_hours_that_do_not_cross_midnight() -> None:
    lunch = WINDOW.model_copy(update={"quiet_hours": "12:00-13:00"})
    assert next_send_time(local(23, 12, 30), lunch) == local(23, 13).astimezone(dt.UTC)
    assert next_send_time(local(23, 1, 0), lunch) == local(23, 1).astimezone(dt.UTC)


async def test_first_day_text_due_at_0730_is_held_until_0800(stack: Stack) -> None:
    stack.at(7, 30)
    mum = parent(1, email="mum@example.com", channels=("sms", "email"))
    await stack.publish_requests(family_request(stack.clock.now(), mum))
    await stack.requests_processed()
    await stack.smtp.wait_for(1)  # family email is not held
    await stack.sent(1)

    stack.at(7, 59)
    await stack.dispatch_due()
    assert stack.twilio.attempts == []
    statuses = {n["channel"]: n["status"] for n in await stack.notifications()}
    assert statuses == {"sms": "pending", "email": "sent"}

    stack.at(8, 0)
    await stack.dispatch_due()
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900001"
    await stack.sent(2)


async def test_safeguarding_alert_to_a_professional_is_not_held(stack: Stack) -> None:
    stack.at(22, 0)
    worker = Recipient(role="social_worker", ref="P1/social_worker", name="A Worker",
                       phone="+447700900200", channels=("sms",))
    request = family_request(stack.clock.now(), rule="first_day_contact", recipients=(worker,),
                             unreachable=(), safeguarding=True)
    await stack.publish_requests(request)
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900200"


async def test_fallback_that_falls_due_in_the_evening_waits_for_the_morning(stack: Stack) -> None:
    stack.at(19, 50)
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    await stack.sent(1)
    stack.at(20, 5)  # the receipt wait runs out inside quiet hours
    await stack.dispatch_due()
    assert len(stack.twilio.attempts) == 1
    stack.at(8, 0, day=dt.date(2026, 11, 24))
    await stack.dispatch_due()
    texts = await stack.twilio.wait_for_messages(2)
    assert [t["to"] for t in texts] == ["+447700900001", "+447700900002"]
