"""Providers misbehave: Twilio 429 and 5xx storms, time-outs, an SMTP server refusing
connections. Retries are bounded, then the message is recorded as failed and the family
fallback applies (the next contact, then the attendance officer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack, family_request, parent

FIRST, SECOND = "+447700900001", "+447700900002"
ATTEMPTS = 3


@pytest.fixture
async def faulty(amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub,
                 smtp: SmtpSink, tmp_path: Path) -> Any:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"send_attempts": ATTEMPTS,
                                         "provider_timeout_seconds": 0.3,
                                         "retry_max_seconds": 0.05}) as stack:
        yield stack


async def _statuses(stack: Stack) -> dict[str, str]:
    return {n["to"]: n["status"] for n in await stack.notifications()}


@pytest.mark.parametrize("status", [429, 503])
async def test_a_storm_of_429s_or_5xx_is_retried_a_bounded_number_of_times_then_falls_back(
    faulty: Stack, status: int,
) -> None:
    faulty.twilio.fail_next(ATTEMPTS, status)
    await faulty.publish_requests(family_request(faulty.clock.now(), parent(1), parent(2)))
    await faulty.sent(2)
    assert len(faulty.twilio.attempts) == ATTEMPTS + 1, "bounded: 3 tries, then the next contact"
    assert [m["to"] for m in faulty.twilio.messages] == [SECOND]
    assert await _statuses(faulty) == {FIRST: "failed", SECOND: "sent"}


async def test_twilio_timing_out_is_bounded_and_the_next_contact_is_texted(
    faulty: Stack,
) -> None:
    faulty.twilio.delay_next(ATTEMPTS, 2.0)
    await faulty.publish_requests(family_request(faulty.clock.now(), parent(1), parent(2)))
    await faulty.sent(2, timeout=20)
    statuses = await _statuses(faulty)
    assert statuses[SECOND] == "sent"
    assert statuses[FIRST] in ("failed", "sent"), statuses
    assert sum(1 for a in faulty.twilio.attempts if a["params"]["To"] == FIRST) <= ATTEMPTS


async def test_smtp_refusing_connections_fails_the_email_and_reaches_the_officer_once(
    faulty: Stack,
) -> None:
    await faulty.smtp.refuse_connections()
    only_email = parent(1, email="mum@example.com", channels=("email",))
    await faulty.publish_requests(family_request(faulty.clock.now(), only_email))
    await faulty.sent(1, timeout=20)
    assert (await _statuses(faulty))["mum@example.com"] == "failed"
    await faulty.smtp.accept_connections()
    await faulty.dispatch_due()
    officer = await faulty.smtp.wait_for(1)
    assert officer[0]["To"] == "attendance@millbrook.example"
    await faulty.dispatch_due()
    assert len(faulty.smtp.messages) == 1, "the officer is told once"


async def test_text_accepted_but_unanswered_is_looked_up_not_sent_again(faulty: Stack) -> None:
    """Twilio took the message but its answer never arrived (time-out): before retrying, the
    notifier asks Twilio, finds the message and records it; the parent gets one text."""
    faulty.twilio.lose_answers(1, 2.0)
    await faulty.publish_requests(family_request(faulty.clock.now(), parent(1), parent(2)))
    await faulty.sent(1, timeout=20)
    assert [m["to"] for m in faulty.twilio.messages] == [FIRST]
    (notification,) = await faulty.notifications()
    assert notification["status"] == "sent"
    assert notification["provider_id"] == faulty.twilio.messages[0]["sid"]
