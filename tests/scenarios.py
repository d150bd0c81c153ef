"""Helpers shared by the rule scenario tests (tests/test_rules_*.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from email.message import EmailMessage
from typing import Any

from broker_messages import topology
from broker_messages.contact import ReplyReceived
from servicekit.broker import persistent_message

from tests.factories import LONDON, mark
from tests.stack import Stack


async def register(stack: Stack, pupil_id: str, day: dt.date, code: str = "N",
                   sessions: tuple[str, ...] = ("AM",), run_at: tuple[int, int] = (9, 30)) -> None:
    """The register for `day`, taken at 08:52 that morning; then the scheduler at 09:30."""
    stack.at(8, 52, day=day)
    recorded = dt.datetime.combine(day, dt.time(8, 52), tzinfo=LONDON)
    await stack.publish(*(mark(pupil_id, code, day=day, session=s, recorded=recorded)
                          for s in sessions))
    await stack.processed()
    stack.at(*run_at, day=day)
    await stack.run_due()


async def tasks(stack: Stack, kind: str | None = None) -> list[dict[str, Any]]:
    """The school's tasks, or those of one `kind`. A text no handset receipted (the stub sends
    no receipts unless told) also opens a `family_unreachable` task, whenever the notifier's
    background sweep next looks: tests of another kind of task name it."""
    response = await stack.triage_api.get("/api/v1/tasks", params={"school_urn": "123456"})
    response.raise_for_status()
    return [t for t in response.json() if kind is None or t["kind"] == kind]


async def timeline(stack: Stack, pupil_id: str) -> dict[str, Any]:
    response = await stack.triage_api.get(f"/api/v1/pupils/{pupil_id}/timeline",
                                          params={"school_urn": "123456"})
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def emails_about(stack: Stack, words: str, count: int,
                       timeout: float = 10.0) -> list[EmailMessage]:
    """Wait for `count` emails whose subject contains `words`."""
    async with asyncio.timeout(timeout):
        while True:
            found = [m for m in stack.smtp.messages if words in str(m["Subject"])]
            if len(found) >= count:
                return found
            await stack.smtp.wait_for(len(stack.smtp.messages) + 1, timeout)


async def publish_reply(stack: Stack, reply: ReplyReceived) -> None:
    """The notifier's `ReplyReceived`, on the exchange triage's reply consumer reads."""
    channel = await stack.broker.channel()
    await topology.declare_replies(channel)
    exchange = await channel.get_exchange(topology.NOTIFIER_EVENTS_EXCHANGE)
    consumer = stack.triage.reply_consumer
    assert consumer is not None
    before = consumer.settled
    await exchange.publish(persistent_message(reply.model_dump_json(by_alias=True).encode(),
                                              message_id=reply.reply_id),
                           routing_key=topology.REPLY_ROUTING_KEY)
    await channel.close()
    await consumer.wait_settled(before + 1)


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]
