"""docs/rules.md "Contacting people": a message that goes out later than the day it is about names the day ("on
Monday 23 November"), never "today". The message is rendered when it is stored, knowing when it
is due (a text held by quiet hours goes out the next school morning)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from broker_messages.contact import Recipient
from notifier.templates import TemplateLibrary
from triage.rules import FAMILY_RULES

from tests.factories import LONDON
from tests.stack import Stack, family_request, parent

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
TUESDAY = dt.date(2026, 11, 24)


@pytest.mark.parametrize("rule", FAMILY_RULES)
@pytest.mark.parametrize("language", ["en", "cy"])
def test_no_family_message_going_out_on_a_later_day_says_today(rule: str,
                                                                language: str) -> None:
    library = TemplateLibrary(TEMPLATES)
    request = family_request(dt.datetime(2026, 11, 23, 20, 30, tzinfo=LONDON), rule=rule)
    request = request.model_copy(update={"details": {
        "attendance_percent": 88.5, "absence_percent": 11.5, "possible_sessions": 52}})
    contact = Recipient(role="parent", ref="P1/contact/1", name="Jane Doe",
                        phone="+447700900001", email="jane@example.com", language=language,
                        channels=("sms", "voice", "email"))
    tuesday_morning = dt.datetime(2026, 11, 24, 8, 0, tzinfo=LONDON)
    for channel in contact.channels:
        rendered = library.render_request(request, contact, channel, tuesday_morning)
        for text in (rendered.body, rendered.subject or "", rendered.html or ""):
            assert "today" not in text.lower() and "heddiw" not in text.lower(), (channel, text)


async def test_text_held_overnight_names_the_day_and_the_email_sent_at_once_says_today(
    stack: Stack,
) -> None:
    stack.at(20, 30)  # Monday evening: the text is held to Tuesday 08:00
    mum = parent(1, email="mum@example.com", channels=("sms", "email"))
    await stack.publish_requests(family_request(stack.clock.now(), mum))
    (email,) = await stack.smtp.wait_for(1)
    assert "is not in school today" in email["Subject"]

    stack.at(8, 0, day=TUESDAY)
    await stack.dispatch_due()
    (text,) = await stack.twilio.wait_for_messages(1)
    assert "Sally was not in school on Monday 23 November and we have not heard why" in (
        text["body"])
    assert "today" not in text["body"]


async def test_welsh_text_held_overnight_names_the_day_in_welsh(stack: Stack) -> None:
    stack.at(20, 30)
    await stack.publish_requests(family_request(stack.clock.now(), parent(1, language="cy")))
    await stack.requests_processed()
    stack.at(8, 0, day=TUESDAY)
    await stack.dispatch_due()
    (text,) = await stack.twilio.wait_for_messages(1)
    assert "Nid oedd Sally yn yr ysgol ddydd Llun 23 Tachwedd" in text["body"]
    assert "heddiw" not in text["body"]


async def test_call_held_over_the_weekend_names_the_day(stack: Stack) -> None:
    friday = dt.date(2026, 11, 27)
    stack.at(20, 30, day=friday)
    request = family_request(stack.clock.now(), parent(1, channels=("voice",)), day=friday)
    await stack.publish_requests(request)
    await stack.requests_processed()
    stack.at(8, 0, day=dt.date(2026, 11, 30))
    await stack.dispatch_due()
    (call,) = await stack.twilio.wait_for_calls(1)
    assert "was not in school on Friday 27 November" in call["twiml"]


async def test_text_sent_on_the_day_still_says_today(stack: Stack) -> None:
    stack.at(9, 30)
    pupils = (("P1", "Sally"), ("P2", "Tom"))
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), pupils=pupils))
    (text,) = await stack.twilio.wait_for_messages(1)
    assert "Sally and Tom are not in school today and we have not heard why" in text["body"]
