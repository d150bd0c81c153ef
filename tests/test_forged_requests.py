"""docs/security.md "Broker": the notifier sends only what triage signed.

Broker permissions keep mark publishers off the notifier's exchange
(tests/test_broker_least_privilege.py); these tests take the next step and assume a client that
can publish there anyway. Its forged commands are dead-lettered with the reason and nobody is
contacted. To prove "nothing was sent" without sleeping, each test then publishes a genuine
request and waits for it: the notifier settles its queue in order, so when the genuine text has
arrived, the forged one has long been refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from broker_messages import topology
from broker_messages.contact import ContactRequest, Recipient
from pydantic import SecretStr
from servicekit.message_signing import (
    BAD_SIGNATURE,
    KEY_ID_HEADER,
    NOT_CONFIGURED,
    SIGNATURE_HEADER,
    UNKNOWN_KEY,
    UNSIGNED,
    SigningKey,
)

from tests.factories import contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import SIGNING_KEY, Stack, family_request, parent

ATTACKER_PHONE = "+447700900666"
PHISHING = "Your dinner-money account is locked, pay at http://evil.example/pay"
GENUINE_PHONE = "+447700900001"
OLD_KEY = "the-key-triage-used-until-this-morning-0001"


def phishing_request(stack: Stack) -> bytes:
    """Valid JSON, a valid contact.request/v1: an SMS and an email to arbitrary addresses."""
    victim = Recipient(role="parent", ref="X1/contact/1", name="Parent", phone=ATTACKER_PHONE,
                       email="g@attacker.example", channels=("sms", "email"))
    request = family_request(stack.clock.now(), victim, pupils=(("X1", "Sally"),))
    body = json.loads(request.model_dump_json(by_alias=True))
    body["request_id"] = "forged:1"
    body["details"] = {"note": PHISHING}
    body["recipients"] = [victim.model_dump(mode="json")]
    return json.dumps(body).encode()


def genuine_request(stack: Stack) -> ContactRequest:
    return family_request(stack.clock.now(), parent(1, GENUINE_PHONE))


async def refusal(stack: Stack) -> str:
    (dead,) = await stack.dead_letters(topology.REQUESTS_DEAD_QUEUE)
    return str((dead.headers or {})[topology.REJECTION_REASON_HEADER])


async def only_the_genuine_text_was_sent(stack: Stack) -> None:
    await stack.publish_requests(genuine_request(stack))
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == GENUINE_PHONE
    await stack.sent(1)
    assert [t["to"] for t in stack.twilio.messages] == [GENUINE_PHONE]
    assert stack.smtp.messages == []
    assert [n["to"] for n in await stack.notifications()] == [GENUINE_PHONE]


async def test_unsigned_request_from_a_client_on_the_broker_is_refused_and_nothing_is_sent(
    stack: Stack,
) -> None:
    await stack.publish_command(phishing_request(stack), topology.CONTACT_REQUEST_ROUTING_KEY,
                                signing_key=None)
    assert await refusal(stack) == UNSIGNED
    await only_the_genuine_text_was_sent(stack)


async def test_request_signed_with_a_key_the_notifier_does_not_hold_is_refused(
    stack: Stack,
) -> None:
    await stack.publish_command(phishing_request(stack), topology.CONTACT_REQUEST_ROUTING_KEY,
                                signing_key="a-key-the-attacker-made-up-of-enough-length")
    assert await refusal(stack) == UNKNOWN_KEY
    await only_the_genuine_text_was_sent(stack)


async def test_copied_signature_with_a_made_up_value_is_refused(stack: Stack) -> None:
    body = phishing_request(stack)
    key_id = SigningKey(SIGNING_KEY).key_id
    await stack.publish_command(body, topology.CONTACT_REQUEST_ROUTING_KEY, signing_key=None,
                                headers={KEY_ID_HEADER: key_id, SIGNATURE_HEADER: "0" * 64})
    assert await refusal(stack) == BAD_SIGNATURE
    await only_the_genuine_text_was_sent(stack)


async def test_tampered_body_fails_its_signature(stack: Stack) -> None:
    """A genuine request whose number is changed after triage signed it."""
    body = genuine_request(stack).model_dump_json(by_alias=True).encode()
    signed = SigningKey(SIGNING_KEY).headers(body)
    tampered = body.replace(GENUINE_PHONE.encode(), ATTACKER_PHONE.encode())
    assert tampered != body
    await stack.publish_command(tampered, topology.CONTACT_REQUEST_ROUTING_KEY,
                                signing_key=None, headers=signed)
    assert await refusal(stack) == BAD_SIGNATURE
    await only_the_genuine_text_was_sent(stack)


async def test_forged_cancellation_does_not_stop_a_genuine_request(stack: Stack) -> None:
    request = genuine_request(stack)
    forged = {"schema": "contact.cancel/v1", "request_id": request.request_id,
              "school_urn": "123456", "pupil_ids": ["P1"], "reason": "re-coded",
              "cancelled_at": stack.clock.now().isoformat()}
    await stack.publish_command(json.dumps(forged).encode(), topology.CONTACT_CANCEL_ROUTING_KEY,
                                signing_key=None)
    assert await refusal(stack) == UNSIGNED
    await only_the_genuine_text_was_sent(stack)


async def test_requests_from_triage_are_signed_and_sent(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Sally", contacts=[contact(1, phone=GENUINE_PHONE)])]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() == 1
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == GENUINE_PHONE


@pytest.fixture
async def rotating(amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub,
                   smtp: SmtpSink, tmp_path: Path) -> AsyncIterator[Stack]:
    """Mid-rotation: both services hold the new key, the notifier still accepts the old one."""
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"contact_signing_key_previous": SecretStr(OLD_KEY)},
                     ) as running:
        yield running


async def test_request_signed_with_the_previous_key_still_goes_during_rotation(
    rotating: Stack,
) -> None:
    await rotating.publish_command(
        genuine_request(rotating).model_dump_json(by_alias=True).encode(),
        topology.CONTACT_REQUEST_ROUTING_KEY, signing_key=OLD_KEY)
    (text,) = await rotating.twilio.wait_for_messages(1)
    assert text["to"] == GENUINE_PHONE


@pytest.fixture
async def unconfigured(amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub,
                       smtp: SmtpSink, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"contact_signing_key": None}) as running:
        yield running


async def test_notifier_without_a_key_refuses_every_request(unconfigured: Stack) -> None:
    await unconfigured.publish_requests(genuine_request(unconfigured))
    assert await refusal(unconfigured) == NOT_CONFIGURED
    assert unconfigured.twilio.messages == [] and await unconfigured.notifications() == []
