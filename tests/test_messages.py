"""Issue 16: every template, in every language and channel, read as its recipient would: dates,
numbers and names in the message's language (Babel), phone numbers as British readers dial them,
every family text in one GSM-7 segment with the longest names, and nothing unresolved or
private. The segment counts are recorded in templates/README.md."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from broker_messages.contact import Channel, ContactRequest, PupilRef, Recipient, School
from notifier.compose import UNREACHABLE_RULE, render_unreachable
from notifier.sms_cost import sms_cost
from notifier.templates import AUDIENCES, TemplateLibrary, national_phone
from triage.rules import ALL_RULES, FAMILY_RULES

from tests.factories import LONGEST_GIVEN_NAME, LONGEST_SCHOOL_NAME
from tests.stack import Stack

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
CHANNELS: tuple[Channel, ...] = ("sms", "voice", "email")
LANGUAGES = ("en", "cy")
ENGLISH_DAYS_AND_MONTHS = re.compile(
    r"\b(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|February|March|"
    r"April|May|June|July|August|September|October|November|December)\b")
# A Thursday start and a Monday third day: "absent since" and "day 3" are different dates.
START, DAY = dt.date(2026, 11, 19), dt.date(2026, 11, 23)
NEXT_MORNING = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)


def _request(rule: str) -> ContactRequest:
    return ContactRequest(
        request_id=f"{rule}:longest", rule=rule,
        school=School(urn="123456", name=LONGEST_SCHOOL_NAME, phone="+441632960000"),
        date=DAY, episode_start=START,
        pupils=(PupilRef(pupil_id="P0001", given_name=LONGEST_GIVEN_NAME,
                         family_name="Featherstonehaugh"),),
        details={"attendance_percent": 89.9, "absence_percent": 10.1, "possible_sessions": 124,
                 "sessions": "AM and PM", "contact_attempts": 2, "home_visit_planned": 1,
                 "school_contact": "R Baish", "visit_day": DAY.isoformat(),
                 "recode_within_days": 5, "about_rule": "first day contact",
                 "contacts_tried": 2, "count": 3, "pupils": 2, "pupil_ids": "P0107, P0108",
                 "discard_on": "2026-12-04",
                 "instead": "emails to Jane Smith still go; then John Smith (father) is tried"},
        requested_at=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC),
    )


def _recipient(role: str, language: str, channel: Channel) -> Recipient:
    return Recipient(role=role, ref="P0001/contact/1", name="Jane Doe",  # type: ignore[arg-type]
                     phone="+447700900001", email="jane@example.com", language=language,
                     channels=(channel,))


def _render(library: TemplateLibrary, rule: str, role: str, language: str, channel: Channel,
            due: dt.datetime | None = None) -> list[str]:
    request, recipient = _request(rule), _recipient(role, language, channel)
    if rule == UNREACHABLE_RULE:
        rendered = render_unreachable(library, request, recipient, channel)
    else:
        rendered = library.render_request(request, recipient, channel, due)
    return [text for text in (rendered.body, rendered.subject, rendered.html) if text]


CASES = [(rule, role, language, channel) for rule in ALL_RULES for role in AUDIENCES[rule]
         for language in LANGUAGES for channel in CHANNELS]


def test_every_rule_says_whom_its_templates_are_for() -> None:
    assert sorted(AUDIENCES) == sorted(ALL_RULES)
    assert {rule for rule, roles in AUDIENCES.items() if "parent" in roles} == set(FAMILY_RULES)


@pytest.mark.parametrize(("rule", "role", "language", "channel"), CASES)
def test_every_template_reads_right_in_its_language(rule: str, role: str, language: str,
                                                    channel: Channel) -> None:
    library = TemplateLibrary(TEMPLATES, "https://staff.example")
    for due in (None, NEXT_MORNING):
        for text in _render(library, rule, role, language, channel, due):
            assert not re.search(r"\{\{|\}\}|\{%|%\}", text), text
            assert "+441632960000" not in text and "+44 1632" not in text, text
            if language == "cy" and (TEMPLATES / rule / f"{channel}.cy.txt.j2").exists():
                assert not ENGLISH_DAYS_AND_MONTHS.search(text), text
            if channel == "voice":
                assert "01632 960000" not in text, "a voice reads the number digit by digit"
            if role == "parent":
                assert "Featherstonehaugh" not in text and "P0001" not in text, text
                assert "staff.example" not in text


@pytest.mark.parametrize("rule", FAMILY_RULES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_family_text_is_one_gsm7_segment_with_the_longest_names(
        rule: str, language: str) -> None:
    library = TemplateLibrary(TEMPLATES)
    for due in (None, NEXT_MORNING):
        (body,) = _render(library, rule, "parent", language, "sms", due)
        cost = sms_cost(body)
        assert (cost.encoding, cost.segments) == ("GSM-7", 1), (cost, body)
        assert LONGEST_GIVEN_NAME in body and LONGEST_SCHOOL_NAME in body


def test_dates_days_and_numbers_are_written_for_the_language() -> None:
    library = TemplateLibrary(TEMPLATES)
    (welsh,) = _render(library, "first_day_contact", "parent", "cy", "sms", NEXT_MORNING)
    assert "ddydd Llun 23 Tachwedd" in welsh
    (english,) = _render(library, "first_day_contact", "parent", "en", "sms", NEXT_MORNING)
    assert "on Monday 23 November" in english
    email = library.render_request(_request("social_worker_unexplained"),
                                   _recipient("social_worker", "cy", "email"), "email")
    assert "Dydd Llun 23 Tachwedd 2026" in email.body
    (stage1,) = _render(library, "attendance_stage1", "parent", "cy", "sms")
    assert "89.9%" in stage1


def test_phone_numbers_are_national_and_spoken_digit_by_digit() -> None:
    assert national_phone("+441632960000") == "01632 960000"
    assert national_phone("+447700900123") == "07700 900123"
    assert national_phone("+33142685300").startswith("+33 1 42")
    library = TemplateLibrary(TEMPLATES)
    (sms,) = _render(library, "first_day_contact", "parent", "en", "sms")
    assert sms.endswith("call 01632 960000.")
    (voice,) = _render(library, "first_day_contact", "parent", "en", "voice")
    assert "0 1 6 3 2, 9 6 0 0 0 0" in voice


def test_welsh_lists_names_with_a_or_ac() -> None:
    library = TemplateLibrary(TEMPLATES)
    request = _request("first_day_contact").model_copy(update={"pupils": (
        PupilRef(pupil_id="P1", given_name="Tomos", family_name="X"),
        PupilRef(pupil_id="P2", given_name="Elin", family_name="X"))})
    welsh = library.render_request(request, _recipient("parent", "cy", "sms"), "sms").body
    assert "Tomos ac Elin" in welsh
    english = library.render_request(request, _recipient("parent", "en", "sms"), "sms").body
    assert "Tomos and Elin are not in school today" in english


def test_what_forces_ucs2_is_named() -> None:
    assert sms_cost("a" * 160).segments == 1 and sms_cost("a" * 161).segments == 2
    curly = sms_cost("Sally\u2019s school \u2013 call us")
    assert (curly.encoding, curly.outside_gsm) == ("UCS-2", "\u2019\u2013")
    assert sms_cost("Si\u00e2n " * 14).segments == 1 and sms_cost("Si\u00e2n " * 15).segments == 2
    assert sms_cost("{" * 80).segments == 1, "an extension character takes two septets"


def test_no_template_text_forces_ucs2_by_accident() -> None:
    """Curly quotes and dashes in the template source itself (Welsh circumflexes are allowed
    in professional and email templates, where segments do not apply)."""
    accidental = re.compile("[\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0]")
    found = [path.relative_to(TEMPLATES).as_posix() for path in TEMPLATES.glob("*/*.j2")
             if accidental.search(path.read_text(encoding="utf-8"))]
    assert found == []


async def _preview(stack: Stack, rule: str, params: dict[str, Any]) -> Any:
    return await stack.notifier_api.get(f"/api/v1/templates/{rule}/preview", params=params)


async def test_every_template_previews_for_its_own_recipients(stack: Stack) -> None:
    for rule, role, language, channel in CASES:
        answer = await _preview(stack, rule, {"channel": channel, "language": language,
                                              "role": role})
        assert answer.status_code == 200, (rule, role, language, channel, answer.text)
        preview = answer.json()
        assert preview["role"] == role and preview["roles"] == list(AUDIENCES[rule])
        assert (preview["segments"] is not None) == (channel == "sms")
    # No role: the rule's own first recipient, never a parent for a staff alert.
    la_referral = await _preview(stack, "la_referral", {"channel": "email"})
    assert la_referral.status_code == 200, la_referral.text
    assert la_referral.json()["role"] == "local_authority"
    assert "Sally Smith (P0001)" in la_referral.json()["body"]
    wrong = await _preview(stack, "la_referral", {"channel": "email", "role": "parent"})
    assert wrong.status_code == 422 and "local_authority" in wrong.json()["detail"]
    day3 = (await _preview(stack, "day3_home_visit", {"channel": "email"})).json()["body"]
    assert "Thursday 19 November 2026" in day3 and "Monday 23 November 2026" in day3
    text = (await _preview(stack, "first_day_contact", {"language": "cy"})).json()
    assert (text["encoding"], text["segments"], text["outside_gsm"]) == ("GSM-7", 1, "")


def test_a_welsh_diacritic_in_a_name_costs_ucs2_and_is_kept() -> None:
    """templates/README.md "Welsh texts": the templates' own Welsh needs no circumflex, but a
    name may (Siân, Ysgol Bro Tâf). It is sent as written, never transliterated: UCS-2, three
    segments at the longest, the cost recorded here."""
    library = TemplateLibrary(TEMPLATES)
    request = _request("first_day_contact").model_copy(update={
        "school": School(urn="123456", name="Ysgol Gynradd Gymraeg Bro Tâf", phone="+441632960000"),
        "pupils": (PupilRef(pupil_id="P1", given_name="Siân-Gwenllïan Angharad"[:20],
                            family_name="X"),)})
    body = library.render_request(request, _recipient("parent", "cy", "sms"), "sms",
                                  NEXT_MORNING).body
    assert "Bro Tâf" in body and "Siân" in body
    cost = sms_cost(body)
    assert (cost.encoding, cost.segments, cost.outside_gsm) == ("UCS-2", 3, "âï")
