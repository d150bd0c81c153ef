"""docs/rules.md "Replies": a parent's text back is attributed only to the schools that texted
that number about a request still open, most recent first. A school that has the number only
as a later contact of its chain, never texted, is not affected: it hears nothing, and its chain
goes on. A MessageSid is taken once: replayed later, it changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from broker_messages import topology
from broker_messages.contact import ContactRequest, ReplyReceived, School

from tests.stack import Stack, family_request, parent

MUM, DAD, GRAN = "+447700900001", "+447700900002", "+447700900003"
A, B = "123456", "654321"
WAIT = dt.timedelta(minutes=15)  # NotifierSettings.delivery_receipt_wait_seconds default
_END = b"end-of-replies"


class TriageReplies:
    """ReplyReceived as triage would consume it, from a queue of the test's own bound like
    `triage.replies` (which triage itself consumes), in the order they were published."""

    def __init__(self, exchange: aio_pika.abc.AbstractExchange) -> None:
        self._exchange = exchange
        self.received: list[ReplyReceived] = []
        self._arrived = asyncio.Condition()
        self._ends = 0

    async def collect(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process(), self._arrived:
            if message.body == _END:
                self._ends += 1
            else:
                self.received.append(ReplyReceived.model_validate_json(message.body))
            self._arrived.notify_all()

    async def so_far(self, stack: Stack) -> list[ReplyReceived]:
        """Everything announced once the relay has published all it holds: a marker sent
        after its confirmed publishes arrives after them (one queue, in order)."""
        assert stack.notifier.relay is not None
        await stack.notifier.relay.publish_pending()
        ends = self._ends + 1
        await self._exchange.publish(aio_pika.Message(_END),
                                     routing_key=topology.REPLY_ROUTING_KEY)
        async with asyncio.timeout(10), self._arrived:
            await self._arrived.wait_for(lambda: self._ends >= ends)
        return list(self.received)


@pytest.fixture
async def triage_replies(stack: Stack) -> AsyncIterator[TriageReplies]:
    channel = await stack.broker.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(topology.NOTIFIER_EVENTS_EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=topology.REPLY_ROUTING_KEY)
    found = TriageReplies(exchange)
    await queue.consume(found.collect)
    yield found
    await channel.close()


def at_school_b(request: ContactRequest) -> ContactRequest:
    """The same kind of request from another school (a sibling at the secondary school)."""
    return request.model_copy(update={
        "school": School(urn=B, name="Riverside Academy", phone="+441235000000"),
        "request_id": request.request_id.replace(A, B)})


async def _replies(stack: Stack) -> list[dict[str, Any]]:
    response = await stack.notifier_api.get("/api/v1/replies")
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def test_school_that_never_texted_the_number_is_not_affected_by_its_reply(
    stack: Stack, triage_replies: TriageReplies,
) -> None:
    school_a = family_request(stack.clock.now(), parent(1, MUM))
    # At B, Mum is Tom's second contact: B texts Dad first, and has not texted her.
    school_b = at_school_b(family_request(
        stack.clock.now(), parent(1, DAD, pupil_id="P9"), parent(2, MUM, pupil_id="P9"),
        pupils=(("P9", "Tom"),)))
    await stack.publish_requests(school_a, school_b)
    await stack.twilio.wait_for_messages(2)
    await stack.sent(2)

    assert (await stack.inbound_sms(MUM, "Sally has a temperature")).status_code == 200
    (event,) = await triage_replies.so_far(stack)
    assert (event.school_urn, event.pupil_ids, event.contact_ref) == (A, ("P1",), "P1/contact/1")
    assert [(r["school_urn"], r["matched"]) for r in await _replies(stack)] == [(A, True)]

    # B still chases Tom's family: Dad's text had no receipt, so Mum is texted next.
    stack.clock.advance(WAIT)
    await stack.dispatch_due()
    await stack.sent(3)
    texts = [m["to"] for m in stack.twilio.messages]
    assert sorted(texts[:2]) == [MUM, DAD] and texts[2:] == [MUM]
    assert "Tom" in stack.twilio.messages[2]["body"]


async def test_reply_to_two_schools_that_texted_the_number_reaches_both_latest_first(
    stack: Stack, triage_replies: TriageReplies,
) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1, MUM)))
    await stack.sent(1)
    stack.clock.advance(dt.timedelta(minutes=5))
    await stack.publish_requests(at_school_b(family_request(
        stack.clock.now(), parent(1, MUM, pupil_id="P9"), pupils=(("P9", "Tom"),))))
    await stack.sent(2)

    assert (await stack.inbound_sms(MUM, "both are ill", sid="SMboth")).status_code == 200
    events = await triage_replies.so_far(stack)
    assert [(e.school_urn, e.pupil_ids) for e in events] == [(B, ("P9",)), (A, ("P1",))]
    assert sorted(r["id"] for r in await _replies(stack)) == [f"SMboth:{A}", f"SMboth:{B}"]


async def test_replayed_message_sid_changes_nothing_even_after_a_school_texted_the_number(
    stack: Stack, triage_replies: TriageReplies,
) -> None:
    assert (await stack.inbound_sms(MUM, "hello?", sid="SMearly")).status_code == 200
    (unmatched,) = await _replies(stack)
    assert (unmatched["matched"], unmatched["school_urn"]) == (False, None)

    await stack.publish_requests(family_request(stack.clock.now(), parent(1, MUM), parent(2, DAD)))
    await stack.sent(1)
    assert (await stack.inbound_sms(MUM, "hello?", sid="SMearly")).status_code == 200
    assert await _replies(stack) == [unmatched]
    assert await triage_replies.so_far(stack) == []

    # The school is still chasing: Mum's text had no receipt, so Dad is texted next.
    stack.clock.advance(WAIT)
    await stack.dispatch_due()
    await stack.sent(2)
    assert [m["to"] for m in stack.twilio.messages] == [MUM, DAD]


async def test_reply_about_a_cancelled_request_is_kept_unmatched(
    stack: Stack, triage_replies: TriageReplies,
) -> None:
    request = family_request(stack.clock.now(), parent(1, MUM))
    await stack.publish_requests(request)
    await stack.sent(1)
    await stack.publish_cancel(request, reason="re-coded after the register closed")
    await stack.requests_processed()

    assert (await stack.inbound_sms(MUM, "she is at school now")).status_code == 200
    (reply,) = await _replies(stack)
    assert (reply["matched"], reply["school_urn"]) == (False, None)
    assert await triage_replies.so_far(stack) == []


async def test_number_nobody_texted_is_unmatched_even_if_a_chain_names_it(
    stack: Stack, triage_replies: TriageReplies,
) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1, MUM),
                                                parent(2, GRAN)))
    await stack.sent(1)
    assert (await stack.inbound_sms(GRAN, "is everything ok?")).status_code == 200
    (reply,) = await _replies(stack)
    assert (reply["matched"], reply["school_urn"]) == (False, None)
    assert await triage_replies.so_far(stack) == []


async def test_reply_cancels_the_next_contact_held_overnight_and_says_why(
    stack: Stack, triage_replies: TriageReplies,
) -> None:
    stack.at(19, 50)
    await stack.publish_requests(family_request(stack.clock.now(), parent(1, MUM),
                                                parent(2, DAD)))
    await stack.sent(1)
    stack.at(20, 5)  # no receipt yet: Dad is next, in the morning
    await stack.dispatch_due()
    assert [n["status"] for n in await stack.notifications() if n["to"] == DAD] == ["pending"]

    assert (await stack.inbound_sms(MUM, "got it, she is ill")).status_code == 200
    (event,) = await triage_replies.so_far(stack)
    assert event.school_urn == A
    stack.at(8, 0, day=dt.date(2026, 11, 24))
    await stack.dispatch_due()
    assert [m["to"] for m in stack.twilio.messages] == [MUM]
    held = [n for n in await stack.notifications() if n["to"] == DAD]
    assert [(n["status"], n["note"]) for n in held] == [
        ("cancelled", "cancelled: the family replied")]
