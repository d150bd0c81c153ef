"""Issue 16 through the real services: a Welsh-speaking parent's first-day text as the Twilio
stub receives it, the family email sent in the school's name with a reply address of its own,
and the parent's email reply, posted signed by an inbound-parse provider, captured against the
pupil's episode and announced to triage like an SMS reply (notifier.email_replies)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from broker_messages import topology
from broker_messages.contact import ReplyReceived
from notifier.sms_cost import sms_cost
from pydantic import SecretStr

from tests.factories import contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack

DOMAIN = "replies.millbrook.example"
SECRET = "inbound-email-test-secret"
WELSH_PARENT = contact(1, phone="+447700900001", email="rhiant@example.com", language="cy",
                       name="Rhiannon Jones")


@pytest.fixture
async def replying(amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub,
                   smtp: SmtpSink, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"reply_domain": DOMAIN,
                                         "inbound_email_secret": SecretStr(SECRET)}) as running:
        yield running


@pytest.fixture
async def to_triage(replying: Stack) -> AsyncIterator[asyncio.Queue[ReplyReceived]]:
    """ReplyReceived as triage consumes it, from a queue of the test's own on the same key."""
    channel = await replying.broker.channel()
    exchange = await channel.get_exchange(topology.NOTIFIER_EVENTS_EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=topology.REPLY_ROUTING_KEY)
    found: asyncio.Queue[ReplyReceived] = asyncio.Queue()

    async def collect(message: Any) -> None:
        async with message.process():
            found.put_nowait(ReplyReceived.model_validate_json(message.body))

    await queue.consume(collect)
    yield found
    await channel.close()


async def _post(stack: Stack, email: dict[str, str], *, secret: str = SECRET) -> Any:
    body = json.dumps(email).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return await stack.notifier_api.post("/inbound/email", content=body, headers={
        "Content-Type": "application/json", "X-Signature": signature, "Authorization": ""})


async def test_a_welsh_parent_is_texted_in_welsh_and_an_email_reply_reaches_the_episode(
        replying: Stack, to_triage: asyncio.Queue[ReplyReceived]) -> None:
    stack = replying
    await stack.put_school(school([pupil("P1", "Osian", contacts=[WELSH_PARENT])]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() == 1

    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["body"] == ("Millbrook Primary School: Nid yw Osian yn yr ysgol heddiw ac nid "
                            "ydym wedi clywed pam. Atebwch neu ffoniwch 01235 764822.")
    assert (sms_cost(text["body"]).encoding, sms_cost(text["body"]).segments) == ("GSM-7", 1)

    (email,) = await stack.smtp.wait_for(1)
    assert parseaddr(email["From"]) == ("Millbrook Primary School", "attendance@school.example")
    name, reply_to = parseaddr(email["Reply-To"])
    assert name == "Millbrook Primary School" and reply_to.endswith("@" + DOMAIN)
    await stack.sent(2)

    reply = {"message_id": "<abc@mail.example>", "to": reply_to, "from": "rhiant@example.com",
             "text": "Mae Osian yn sal heddiw."}
    assert (await _post(stack, reply, secret="wrong")).status_code == 403
    assert (await _post(stack, reply)).status_code == 202
    assert (await _post(stack, reply)).status_code == 202, "a redelivery is accepted"

    event = await asyncio.wait_for(to_triage.get(), 10)
    assert (event.school_urn, event.pupil_ids, event.contact_ref) == ("123456", ("P1",),
                                                                      "P1/contact/1")
    (stored,) = (await stack.notifier_api.get("/api/v1/replies",
                                              params={"pupil_id": "P1"})).json()
    assert stored["id"] == event.reply_id and stored["matched"] is True
    assert stored["from"] == "rhiant@example.com" and stored["body"] == reply["text"]
    assert stored["episodes"] == [{"pupil_id": "P1", "episode_start": "2026-11-23"}]
    assert to_triage.empty(), "the redelivered reply was announced once"


async def test_an_email_reply_that_names_no_message_is_kept_unmatched_and_bad_fields_are_listed(
        replying: Stack) -> None:
    unknown = {"message_id": "<x@mail.example>", "to": f"office@{DOMAIN}",
               "from": "someone@example.com", "text": "Hello"}
    assert (await _post(replying, unknown)).status_code == 202
    (stored,) = (await replying.notifier_api.get("/api/v1/replies",
                                                 params={"matched": "false"})).json()
    assert stored["school_urn"] is None and stored["pupil_ids"] == []
    bad = await _post(replying, {"to": "", "text": "x"})
    assert bad.status_code == 422
    assert {tuple(p["loc"]) for p in bad.json()["detail"]} == {
        ("message_id",), ("to",), ("from",)}


async def test_without_the_secret_nothing_is_accepted(stack: Stack) -> None:
    answer = await _post(stack, {"message_id": "<x@y>", "to": "a@b.c", "from": "d@e.f",
                                 "text": ""})
    assert answer.status_code == 404
