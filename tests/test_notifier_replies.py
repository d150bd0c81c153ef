"""docs/rules.md "Replies" and "Opt-out": a parent's text back is attached to their children's
open episodes, shown to staff and announced to triage; STOP and START change who is texted."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
from broker_messages import topology
from broker_messages.contact import ReplyReceived

from tests.stack import Stack, family_request, parent

MUM, DAD = "+447700900001", "+447700900002"
SIBLINGS = (("P1", "Sally"), ("P2", "Tom"))


@pytest.fixture
async def triage_replies(stack: Stack) -> AsyncIterator[asyncio.Queue[ReplyReceived]]:
    """ReplyReceived as triage would consume it, from a queue of the test's own bound to the
    same exchange and routing key as `triage.replies` (which triage itself may be consuming)."""
    channel = await stack.broker.channel()
    exchange = await channel.get_exchange(topology.NOTIFIER_EVENTS_EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=topology.REPLY_ROUTING_KEY)
    received: asyncio.Queue[ReplyReceived] = asyncio.Queue()

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            await received.put(ReplyReceived.model_validate_json(message.body))

    await queue.consume(collect)
    yield received
    await channel.close()


async def test_reply_about_two_absent_siblings_is_attached_to_both_and_sent_to_triage(
    stack: Stack, triage_replies: asyncio.Queue[ReplyReceived],
) -> None:
    request = family_request(stack.clock.now(), parent(1), parent(2), pupils=SIBLINGS)
    await stack.publish_requests(request)
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == MUM and "Sally and Tom" in text["body"]
    await stack.sent(1)

    response = await stack.inbound_sms(MUM, "she has a temperature")
    assert response.status_code == 200 and "<Response>" in response.text

    event = await asyncio.wait_for(triage_replies.get(), 10)
    assert event.school_urn == "123456" and event.pupil_ids == ("P1", "P2")
    assert event.contact_ref == "P1/contact/1"
    listed = (await stack.notifier_api.get("/api/v1/replies",
                                           params={"school_urn": "123456"})).json()
    assert len(listed) == 1
    (reply,) = listed
    assert reply["id"] == event.reply_id and reply["body"] == "she has a temperature"
    assert reply["matched"] is True and reply["from"] == MUM and reply["kind"] == "reply"
    assert reply["episodes"] == [{"pupil_id": "P1", "episode_start": "2026-11-23"},
                                 {"pupil_id": "P2", "episode_start": "2026-11-23"}]

    # The family has been heard: no fallback to the second contact, however long we wait.
    stack.clock.advance(dt.timedelta(hours=1))
    await stack.dispatch_due()
    assert [m["to"] for m in stack.twilio.messages] == [MUM]
    assert stack.smtp.messages == []


async def test_same_reply_webhook_twice_is_stored_and_announced_once(
    stack: Stack, triage_replies: asyncio.Queue[ReplyReceived],
) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1)))
    await stack.sent(1)
    for _ in range(2):
        assert (await stack.inbound_sms(MUM, "Ill today", sid="SMreply1")).status_code == 200
    first = await asyncio.wait_for(triage_replies.get(), 10)
    assert stack.notifier.relay is not None
    await stack.notifier.relay.publish_pending()
    # One announcement. The outbox is at-least-once (a relay racing another may publish a row
    # twice); any copy carries the same reply_id, which triage's idempotency absorbs.
    while not triage_replies.empty():
        assert triage_replies.get_nowait().reply_id == first.reply_id
    assert len((await stack.notifier_api.get("/api/v1/replies")).json()) == 1


async def test_reply_from_an_unknown_number_is_kept_and_flagged(
    stack: Stack, triage_replies: asyncio.Queue[ReplyReceived],
) -> None:
    response = await stack.inbound_sms("+447700900777", "who is this?")
    assert response.status_code == 200
    (reply,) = (await stack.notifier_api.get("/api/v1/replies",
                                             params={"matched": "false"})).json()
    assert reply["matched"] is False and reply["school_urn"] is None
    assert reply["body"] == "who is this?" and reply["pupil_ids"] == []
    assert stack.notifier.relay is not None
    await stack.notifier.relay.publish_pending()
    assert triage_replies.empty()


async def test_forged_reply_is_refused_and_stored_nowhere(stack: Stack) -> None:
    response = await stack.inbound_sms(MUM, "she has a temperature", auth_token="forged")
    assert response.status_code == 403
    assert (await stack.notifier_api.get("/api/v1/replies")).json() == []


async def test_parent_who_replied_stop_is_not_texted_again_until_start(
    stack: Stack, triage_replies: asyncio.Queue[ReplyReceived],
) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    await stack.sent(1)
    assert (await stack.inbound_sms(MUM, "Stop")).status_code == 200

    # Next day's request: the first contact's text is suppressed, the second is texted.
    tuesday = dt.date(2026, 11, 24)
    await stack.publish_requests(
        family_request(stack.clock.now(), parent(1), parent(2), day=tuesday))
    await stack.sent(3)
    texted = [m["to"] for m in stack.twilio.messages]
    assert texted == [MUM, DAD]
    statuses = {(n["to"], n["status"]) for n in await stack.notifications()}
    assert (MUM, "suppressed") in statuses

    assert (await stack.inbound_sms(MUM, "START")).status_code == 200
    wednesday = dt.date(2026, 11, 25)
    await stack.publish_requests(
        family_request(stack.clock.now(), parent(1), parent(2), day=wednesday))
    await stack.sent(4)
    assert [m["to"] for m in stack.twilio.messages] == [MUM, DAD, MUM]
    kinds = [r["kind"] for r in (await stack.notifier_api.get("/api/v1/replies")).json()]
    assert sorted(kinds) == ["opt_in", "opt_out"]
    assert stack.notifier.relay is not None
    await stack.notifier.relay.publish_pending()
    assert triage_replies.empty(), "STOP and START are not replies about an absence"


async def test_replies_list_needs_the_bearer_token(stack: Stack) -> None:
    response = await stack.notifier_api.get("/api/v1/replies", headers={"Authorization": ""})
    assert response.status_code == 401


def test_reply_received_is_valid_json_for_triage() -> None:
    body = ReplyReceived(reply_id="SM1:123456", school_urn="123456", pupil_ids=("P1",),
                         contact_ref="P1/contact/1",
                         received_at="2026-11-23T09:00:00+00:00").model_dump_json(by_alias=True)
    assert json.loads(body)["schema"] == "reply.received/v1"
