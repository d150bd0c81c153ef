"""Sending through the providers: the one retry layer, the per-sender rate limit (proved on
virtual time, never by sleeping), voice calls in the contact's language, and template previews."""

from __future__ import annotations

import asyncio
import datetime as dt

from broker_messages.contact import Recipient
from notifier.rate_limit import TokenBucket

from tests.factories import MONDAY
from tests.stack import Stack, family_request, parent


class VirtualTimer:
    """Monotonic time that only moves when a caller sleeps: a rate is then exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


class RecordingBucket(TokenBucket):
    def __init__(self, rate: float, timer: VirtualTimer) -> None:
        super().__init__(rate, timer)
        self.grants: list[float] = []

    async def acquire(self) -> float:
        granted = await super().acquire()
        self.grants.append(granted)
        return granted


def most_in_any_second(grants: list[float]) -> int:
    grants = sorted(grants)
    best, start = 0, 0
    for end, at in enumerate(grants):
        while at - grants[start] >= 1.0 - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_token_bucket_never_exceeds_its_rate_and_drops_nothing() -> None:
    bucket = RecordingBucket(10, VirtualTimer())
    await asyncio.gather(*(bucket.acquire() for _ in range(1000)))
    assert len(bucket.grants) == 1000
    assert most_in_any_second(bucket.grants) == 10
    assert abs(bucket.grants[-1] - 99.9) < 1e-6  # 1,000 grants at 10 a second, from 0


async def test_thousand_queued_texts_never_exceed_the_senders_rate(stack: Stack) -> None:
    assert stack.notifier.dispatcher is not None
    bucket = RecordingBucket(stack.notifier_settings.sms_per_second, VirtualTimer())
    stack.notifier.dispatcher.rate_limits["sms"] = bucket
    requests = [
        family_request(stack.clock.now(), parent(1, phone=f"+4477009{n:05d}", pupil_id=f"P{n}"),
                       pupils=((f"P{n}", "Sally"),), unreachable=())
        for n in range(1000)
    ]
    assert await stack.notifier.intake.accept(requests) == [None] * 1000
    await stack.dispatch_due()
    await stack.sent(1000, timeout=60)

    assert len(stack.twilio.messages) == 1000
    assert len({m["to"] for m in stack.twilio.messages}) == 1000
    assert len(bucket.grants) == 1000
    assert most_in_any_second(bucket.grants) <= 10


async def test_twilio_failing_three_times_then_recovering_sends_exactly_one_text(
    stack: Stack,
) -> None:
    stack.twilio.fail_next(3, 500)
    await stack.publish_requests(family_request(stack.clock.now(), parent(1)))
    await stack.sent(1)
    assert [a["status"] for a in stack.twilio.attempts] == [500, 500, 500, 201]
    assert len(stack.twilio.messages) == 1
    (notification,) = await stack.notifications()
    assert notification["status"] == "sent"
    assert notification["provider_id"] == stack.twilio.messages[0]["sid"]


async def test_welsh_speaking_parent_is_called_in_welsh_and_no_answer_moves_on(
    stack: Stack,
) -> None:
    mam = parent(1, channels=("voice",), language="cy")
    await stack.publish_requests(family_request(stack.clock.now(), mam, parent(2)))
    (call,) = await stack.twilio.wait_for_calls(1)
    assert 'language="cy-GB"' in call["twiml"] and "Polly.Gwyneth" in call["twiml"]
    assert "ysgol" in call["twiml"] and "Sally" in call["twiml"]
    await stack.sent(1)

    assert (await stack.status_callback(call["sid"], "no-answer")).status_code == 204
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900002"
    statuses = {n["channel"]: n["status"] for n in await stack.notifications()}
    assert statuses["voice"] == "undelivered"


async def test_staff_preview_a_template_in_english_and_welsh(stack: Stack) -> None:
    english = await stack.notifier_api.get("/api/v1/templates/first_day_contact/preview",
                                           params={"channel": "sms", "language": "en"})
    assert english.status_code == 200, english.text
    assert "Sally" in english.json()["body"] and "Millbrook" in english.json()["body"]
    welsh = await stack.notifier_api.get("/api/v1/templates/first_day_contact/preview",
                                         params={"channel": "sms", "language": "cy"})
    assert welsh.json()["body"] != english.json()["body"]
    polish = await stack.notifier_api.get("/api/v1/templates/first_day_contact/preview",
                                          params={"channel": "sms", "language": "pl"})
    assert polish.json()["body"] == english.json()["body"], "falls back to English"
    email = await stack.notifier_api.get("/api/v1/templates/family_unreachable/preview",
                                         params={"channel": "email", "language": "cy"})
    assert email.status_code == 200 and email.json()["subject"]
    assert "Sally Smith" in email.json()["html"]
    missing = await stack.notifier_api.get("/api/v1/templates/no_such_rule/preview")
    assert missing.status_code == 404
    anonymous = await stack.notifier_api.get("/api/v1/templates/first_day_contact/preview",
                                             headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_professionals_are_not_part_of_the_family_chase(stack: Stack) -> None:
    worker = Recipient(role="social_worker", ref="P1/social_worker", name="A Worker",
                       email="worker@la.example", channels=("email",))
    request = family_request(stack.clock.now(), parent(1), recipients=(worker,), day=MONDAY)
    await stack.publish_requests(request)
    await stack.sent(2)
    stack.clock.advance(dt.timedelta(hours=1))
    await stack.dispatch_due()
    # The text had no receipt and there is nobody else in the family: only the officer is told.
    emails = await stack.smtp.wait_for(2)
    assert sorted(e["To"] for e in emails) == ["attendance@millbrook.example",
                                               "worker@la.example"]
