"""docs/rules.md "Contacting people" data minimisation: every family-facing template of every rule, in every
language and channel, carries the child's first name, the school and how to reply — never a
register code, a reason, a health detail or the office comment. Professional templates render
for every rule (StrictUndefined: a missing variable fails here, not in a message)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from broker_messages.codes import CODE_CATEGORIES
from broker_messages.contact import ContactRequest, PupilRef, Recipient, School
from notifier.templates import TemplateLibrary
from triage.rules import ALL_RULES, FAMILY_RULES

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
LANGUAGES = ("en", "cy")
CHANNELS = ("sms", "voice", "email")
SECRET_COMMENT = "Mum said hospital appointment"
STAFF_URL = "https://staff.example"


def _request(rule: str) -> ContactRequest:
    return ContactRequest(
        request_id=f"{rule}:test", rule=rule,
        school=School(urn="123456", name="Millbrook Primary School", phone="+441235764822"),
        date=dt.date(2026, 11, 23),
        pupils=(PupilRef(pupil_id="P0001", given_name="Sally", family_name="Smithson"),
                PupilRef(pupil_id="P0002", given_name="Tom", family_name="Smithson")),
        episode_start=dt.date(2026, 11, 19),
        details={"attendance_percent": 88.5, "absence_percent": 11.5, "possible_sessions": 52,
                 "visit_day": "2026-11-23", "sessions": "AM and PM", "recode_within_days": 5,
                 "about_rule": "first day contact", "contacts_tried": 0,
                 "why": "no contact can be used", "contact_attempts": 1,
                 "home_visit_planned": 1, "school_contact": "R Baish",
                 "instead": "emails to Jane Doe still go"},
        requested_at=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC),
    )


def _recipient(role: str, language: str) -> Recipient:
    return Recipient(role=role, ref="P0001/contact/1", name="Jane Doe", phone="+447700900001",
                     email="jane@example.com", language=language,
                     channels=("sms", "voice", "email"))  # type: ignore[arg-type]


def _parts(library: TemplateLibrary, rule: str, role: str, language: str) -> list[str]:
    request = _request(rule)
    texts = []
    for channel in CHANNELS:
        rendered = library.render_request(request, _recipient(role, language), channel)
        texts += [rendered.body, rendered.subject or "", rendered.html or ""]
    return texts


# Register housekeeping for school staff, written in English only (templates/README.md): a
# Welsh recipient gets the English text, with English dates, rather than a half translation.
ENGLISH_ONLY = frozenset({"unexplained_not_recoded", "parked_marks_expiring"})


def _parts_of(rule: str, channel: str) -> tuple[str, ...]:
    """A family email has HTML of its own; a professional one may leave it to its text
    (notifier.templates.text_to_html), so the two cannot say different things."""
    if channel != "email":
        return ("txt",)
    return ("subject", "txt", "html") if rule in FAMILY_RULES else ("subject", "txt")


def test_every_rule_has_every_channel_and_language() -> None:
    missing = [f"{rule}/{channel}.{lang}.{part}.j2"
               for rule in ALL_RULES
               for lang in (("en",) if rule in ENGLISH_ONLY else LANGUAGES)
               for channel in CHANNELS
               for part in _parts_of(rule, channel)
               if not (TEMPLATES / rule / f"{channel}.{lang}.{part}.j2").exists()
               ]
    assert missing == []


@pytest.mark.parametrize("rule", FAMILY_RULES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_family_messages_carry_no_code_reason_or_comment(rule: str, language: str) -> None:
    library = TemplateLibrary(TEMPLATES, STAFF_URL)
    for text in _parts(library, rule, "parent", language):
        if not text:
            continue
        assert "Sally" in text or "Millbrook" in text
        assert "Smithson" not in text, "family messages use first names only"
        assert "P0001" not in text
        assert STAFF_URL not in text, "the staff app is for staff"
        assert SECRET_COMMENT not in text
        words = set(re.findall(r"[A-Za-z0-9#/\\]+", text))
        assert not words & set(CODE_CATEGORIES), (rule, language, words & set(CODE_CATEGORIES))
        lowered = text.lower()
        for forbidden in ("code", "unauthorised", "illness", "medical", "reason:", "comment"):
            assert forbidden not in lowered, (rule, language, forbidden, text)


# parked_marks_expiring is about pupils the roster does not name: only their ids are known.
@pytest.mark.parametrize("rule", [r for r in ALL_RULES
                                  if r not in ("first_day_contact", "parked_marks_expiring")])
@pytest.mark.parametrize("language", LANGUAGES)
def test_professional_messages_name_the_pupil_in_full(rule: str, language: str) -> None:
    library = TemplateLibrary(TEMPLATES)
    role = "local_authority"
    texts = _parts(library, rule, role, language)
    assert any("Sally Smithson" in t for t in texts)
    assert all(SECRET_COMMENT not in t for t in texts)


@pytest.mark.parametrize("rule", ["social_worker_unexplained", "looked_after_unexplained"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_unexplained_alert_emails_link_to_the_staff_app_only_when_it_is_set(
        rule: str, language: str) -> None:
    request, recipient = _request(rule), _recipient("social_worker", language)
    linked = TemplateLibrary(TEMPLATES, STAFF_URL + "/").render_request(request, recipient,
                                                                        "email")
    for text in (linked.body, linked.html or ""):
        for pupil_id in ("P0001", "P0002"):
            assert f"{STAFF_URL}/pupils/123456/{pupil_id}?date=2026-11-23" in text
    unlinked = TemplateLibrary(TEMPLATES).render_request(request, recipient, "email")
    assert "http" not in unlinked.body + (unlinked.html or "")
    assert "R Baish (" in unlinked.body and "), 01235 764822" in unlinked.body
