"""Issue 16, docs/rules.md "Professional messages": every message to an attendance officer,
safeguarding lead, headteacher, social worker, virtual school or local authority says what
happened, what the school has done, what is asked of the reader and by when, and whom to call at
the school; it links to the pupil's page in the staff app when there is one, and says nothing
more (no code, reason, comment or health detail). Also: the facts triage puts in the request for
it (`staff_details`), and the HTML made from the text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from broker_messages.contact import Channel, ContactRequest, PupilRef, Recipient, School
from notifier.compose import UNREACHABLE_RULE, render_unreachable
from notifier.templates import AUDIENCES, TemplateLibrary, text_to_html
from servicekit.database import make_engine
from sqlalchemy import insert
from triage import outreach
from triage.migrations import upgrade
from triage.models import replies, scheduled_actions
from triage.rates import Counts
from triage.rules import (
    ALL_RULES,
    continuous_absence_10_days,
    day3_home_visit,
    ehcp_absence_15_days,
    family_unreachable,
    la_referral,
    penalty_notice_threshold,
    register_removal,
    unexplained_not_recoded,
)
from triage.rules.professional import ACT_WITHIN_SCHOOL_DAYS, act_by
from triage.rules.rule import DueFacts, YearOutreach

from tests.factories import URN
from tests.rule_facts import MONDAY, NEXT_MONDAY, at, due, pupil, school

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
STAFF_URL = "https://staff.example"
LINK = f"{STAFF_URL}/pupils/123456/P0001?date=2026-11-23"
PRIVATE = ("Mum said hospital appointment", "moved to Spain with dad", "I", "asthma")
LANGUAGES = ("en", "cy")
# Register housekeeping, written in English only (tests/test_templates_privacy.py).
ENGLISH_ONLY = frozenset({"unexplained_not_recoded"})
# Every rule with a professional reader (parked_marks_expiring is school-level: it names no
# pupil and asks the officer for a roster upload before the marks are discarded;
# family_opted_out tells the officer, once, of a family's own choice and what happens instead:
# nothing is asked of them, and they are the school's contact).
RULES = ("social_worker_unexplained", "looked_after_unexplained", "day3_home_visit", "la_referral", "severe_absence", "persistent_absence",
         "continuous_absence_10_days", "ehcp_absence_15_days", "register_removal",
         "family_unreachable", "unexplained_not_recoded", "penalty_notice_threshold",
         "attendance_stage1")
CASES = [(rule, role, language) for rule in RULES for role in AUDIENCES[rule] if role != "parent"
         for language in LANGUAGES]
WORDS = {
    "en": {"done": "What the school has done:", "asked": "What we ask:",
           "by": "by Monday 30 November 2026", "call": "Whom to call at the school:",
           "stage1": "Stage 1 attendance letter: sent Monday 12 October 2026"},
    "cy": {"done": "Yr hyn y mae'r ysgol wedi'i wneud:", "asked": "Gofynnwn i chi",
           "by": "erbyn Dydd Llun 30 Tachwedd 2026", "call": "Pwy i'w ffonio yn yr ysgol:",
           "stage1": "Llythyr presenoldeb cam 1: anfonwyd Dydd Llun 12 Hydref 2026"},
}


def _request(rule: str, **details: Any) -> ContactRequest:
    """As triage sends it (every `details` key some planner sets), plus what a request must
    never show: a comment, a reason, a removal ground, a code, a health word."""
    return ContactRequest(
        request_id=f"{rule}:pro", rule=rule,
        school=School(urn="123456", name="Millbrook Primary School", phone="+441632960000"),
        date=MONDAY, episode_start=dt.date(2026, 11, 19),
        pupils=(PupilRef(pupil_id="P0001", given_name="Sally", family_name="Smith"),),
        details={"attendance_percent": 89.9, "absence_percent": 10.1, "possible_sessions": 124,
                 "sessions": "AM", "recode_within_days": 5, "visit_day": "2026-11-23",
                 "contact_attempts": 2, "home_visit_planned": 1, "school_contact": "R Baish",
                 "act_by": "2026-11-30", "year_family_contacts": 7, "year_home_visits": 1,
                 "stage1_sent_on": "2026-10-12", "school_days": 10, "days_absent": 15.5,
                 "sessions_needed": 10, "weeks": 10, "about_rule": "first day contact",
                 "about_rule_id": "first_day_contact", "contacts_tried": 2,
                 "comment": PRIVATE[0], "ground": PRIVATE[1], "code": PRIVATE[2],
                 "health": PRIVATE[3], **details},
        requested_at=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC),
    )


def _render(library: TemplateLibrary, request: ContactRequest, role: str, language: str,
            channel: Channel) -> tuple[str, str, str]:
    recipient = Recipient(role=role, ref="r", name="Jane Doe",  # type: ignore[arg-type]
                          email="jane@example.com", phone="+447700900001", language=language,
                          channels=(channel,))
    if request.rule == UNREACHABLE_RULE:
        family_request = request.model_copy(update={"rule": "first_day_contact"})
        rendered = render_unreachable(library, family_request, recipient, channel)
    else:
        rendered = library.render_request(request, recipient, channel)
    return rendered.body, rendered.subject or "", rendered.html or ""


@pytest.mark.parametrize(("rule", "role", "language"), CASES)
def test_a_professional_email_says_what_happened_what_was_done_what_to_do_and_whom_to_call(
        rule: str, role: str, language: str) -> None:
    words = WORDS["en" if rule in ENGLISH_ONLY else language]
    body, subject, html = _render(TemplateLibrary(TEMPLATES, STAFF_URL), _request(rule), role,
                                  language, "email")
    assert "Sally Smith (P0001)" in body, "what happened, and to whom"
    assert words["done"] in body and words["stage1"] in body
    assert words["asked"] in body and words["by"] in body
    assert words["call"] in body and "R Baish" in body and "01632 960000" in body
    assert LINK in body and f'<a href="{LINK}">' in html
    for text in (body, subject, html):
        assert not any(private in text.split() or private in text for private in PRIVATE[:2])
        assert PRIVATE[3] not in text and "+441632960000" not in text
    if language == "cy" and rule not in ENGLISH_ONLY:
        assert "first day contact" not in body and "Monday" not in body
    unlinked, _, _ = _render(TemplateLibrary(TEMPLATES), _request(rule), role, language, "email")
    assert "staff.example" not in unlinked and "R Baish" in unlinked


@pytest.mark.parametrize(("rule", "role", "language"), CASES)
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_professional_text_or_call_says_what_to_do_by_when_and_whom_to_call(
        rule: str, role: str, language: str, channel: Channel) -> None:
    body, _, _ = _render(TemplateLibrary(TEMPLATES), _request(rule), role, language, channel)
    assert "Sally Smith (P0001)" in body and "R Baish" in body
    assert WORDS["en" if rule in ENGLISH_ONLY else language]["by"] in body
    phone = "0 1 6 3 2, 9 6 0 0 0 0" if channel == "voice" else "01632 960000"
    assert phone in body
    assert not any(private in body for private in (PRIVATE[0], PRIVATE[1], PRIVATE[3]))


def test_a_day_to_act_on_is_today_and_a_request_without_new_details_still_renders() -> None:
    library = TemplateLibrary(TEMPLATES)
    today = _request("day3_home_visit", act_by="2026-11-23")
    body, _, _ = _render(library, today, "attendance_officer", "en", "email")
    assert "visit the home, see the child and record the visit on the task, today, Monday 23 " \
           "November 2026." in body
    old = _request("la_referral").model_copy(update={"details": {
        "attendance_percent": 89.9, "absence_percent": 10.1, "possible_sessions": 124}})
    body, _, _ = _render(library, old, "local_authority", "en", "email")
    assert "What the school has done" not in body
    assert "Whom to call at the school: 01632 960000" in body


def test_the_welsh_family_unreachable_alert_names_the_rule_in_welsh() -> None:
    body, _, _ = _render(TemplateLibrary(TEMPLATES), _request(UNREACHABLE_RULE),
                               "attendance_officer", "cy", "email")
    assert "cyswllt diwrnod cyntaf" in body and "first day contact" not in body
    assert "ddydd Llun 23 Tachwedd 2026" in body


def test_html_made_from_text_is_escaped_and_links_are_clickable() -> None:
    html = text_to_html('Dear <b>Jo</b> & co,\n\nSee https://staff.example/p?a=1&b=2\nThanks')
    assert str(html) == ('<p>Dear &lt;b&gt;Jo&lt;/b&gt; &amp; co,</p>\n'
                         '<p>See <a href="https://staff.example/p?a=1&amp;b=2">'
                         'https://staff.example/p?a=1&amp;b=2</a><br>\nThanks</p>')
    request = _request("la_referral").model_copy(update={"pupils": (
        PupilRef(pupil_id="P0001", given_name="<script>", family_name="Smith"),)})
    _, _, rendered = _render(TemplateLibrary(TEMPLATES), request, "local_authority", "en",
                             "email")
    assert "<script>" not in rendered and "&lt;script&gt; Smith" in rendered


def test_every_rule_with_a_professional_reader_is_covered() -> None:
    professional = {rule for rule in ALL_RULES if set(AUDIENCES[rule]) - {"parent"}}
    assert professional - {"parked_marks_expiring", "family_opted_out"} == set(RULES)


# --- what triage puts in the request -------------------------------------------------------

def test_the_day_to_act_by_counts_school_days() -> None:
    assert ACT_WITHIN_SCHOOL_DAYS[day3_home_visit.ID] == 0
    assert act_by(day3_home_visit.ID, MONDAY, school()) == MONDAY
    # 5 school days after Monday 23 November: the next Monday (no closure in between).
    assert act_by(continuous_absence_10_days.ID, MONDAY, school()) == NEXT_MONDAY
    # From Thursday 19 November, Friday 20 is closed: Monday to Thursday, then Friday 27.
    assert act_by(continuous_absence_10_days.ID, dt.date(2026, 11, 19), school()) == \
        dt.date(2026, 11, 27)
    # Past the calendar the school sent: weekdays.
    assert act_by(la_referral.ID, dt.date(2026, 12, 17), school()) == dt.date(2026, 12, 31)


OUTREACH = YearOutreach(family_contacts=4, home_visits=1, stage1_on=dt.date(2026, 10, 12))
YEAR = {"year_family_contacts": 4, "year_replies": 0, "year_home_visits": 1,
        "stage1_sent_on": "2026-10-12"}


@pytest.mark.parametrize(("rule", "facts", "expected"), [
    (la_referral, DueFacts(year_counts=Counts(possible=100, authorised=15),
                           year_outreach=OUTREACH), {**YEAR, "act_by": "2026-12-07"}),
    (penalty_notice_threshold, DueFacts(year_outreach=OUTREACH),
     {**YEAR, "act_by": "2026-12-07", "sessions_needed": 10, "weeks": 10}),
    (ehcp_absence_15_days, DueFacts(year_counts=Counts(possible=100, authorised=31),
                                    year_outreach=OUTREACH),
     {**YEAR, "act_by": "2026-12-07", "days_absent": 15.5}),
    (register_removal, DueFacts(year_outreach=OUTREACH), {**YEAR, "act_by": "2026-11-30"}),
    (continuous_absence_10_days, DueFacts(family_contacts_requested=3, year_outreach=OUTREACH),
     {**YEAR, "act_by": "2026-11-30", "school_days": 10, "contact_attempts": 3,
      "family_replied": 0, "home_visit_planned": 0}),
    (unexplained_not_recoded, DueFacts(codes={"AM": "N"}, family_contacts_requested=1,
                                       replied=True),
     {"act_by": "2026-11-23", "contact_attempts": 1, "family_replied": 1, "sessions": "AM",
      "recode_within_days": 5}),
])
def test_planners_add_what_the_school_did_whom_to_call_and_by_when(
        rule: Any, facts: DueFacts, expected: dict[str, Any]) -> None:
    plan = rule.RULE.plan(due(rule.ID, MONDAY, MONDAY), facts, school(), pupil(), at(MONDAY, 10))
    assert plan.cancel is None
    assert {**plan.details, **plan.staff_details} == {
        **({"attendance_percent": 85.0, "absence_percent": 15.0, "possible_sessions": 100}
           if rule is la_referral else {}),
        **({"recode_within_days": 5} if rule is unexplained_not_recoded else {}),
        **expected, "school_contact": "R Baish"}


def test_a_family_message_does_not_carry_the_staff_details() -> None:
    """Siblings share a text only when their details are equal: the year's history differs."""
    from triage.rules import attendance_stage1
    assert attendance_stage1.RULE.plan is not None
    plan = attendance_stage1.RULE.plan(
        due(attendance_stage1.ID, MONDAY), DueFacts(year_counts=Counts(possible=100, authorised=9),
                                                    year_outreach=OUTREACH),
        school(), pupil(), at(MONDAY, 10))
    assert plan.family and "year_family_contacts" not in plan.details
    assert plan.staff_details["year_family_contacts"] == 4


def test_family_unreachable_raised_by_triage_names_the_rule_and_whom_to_call() -> None:
    raised = family_unreachable.raised(due("first_day_contact", MONDAY), school(), pupil(), [])
    assert raised.details["about_rule_id"] == "first_day_contact"
    assert raised.details["school_contact"] == "R Baish"
    assert raised.details["act_by"] == MONDAY.isoformat()


def _row(rule: str, day: dt.date, status: str = "requested",
         pupil_id: str = "P1") -> dict[str, Any]:
    now = at(day, 10)
    return {"rule": rule, "dedup_key": f"{rule}:{pupil_id}:{day}:{status}",
            "school_urn": URN, "pupil_id": pupil_id, "date": day, "status": status,
            "due_at": now, "created_at": now, "updated_at": now}


async def test_the_year_outreach_counts_this_pupils_requested_actions_this_year(
        database_url: str) -> None:
    """Requested family messages, home visits and replies since the school year began (1 August) count; cancelled
    ones, last school year's, other pupils' and staff-only alerts do not; the stage-1 day is
    the last."""
    engine = make_engine(database_url)
    await upgrade(engine)
    rows = [_row("first_day_contact", dt.date(2026, 9, 14)),
            _row("first_day_contact", dt.date(2026, 11, 19)),
            _row("attendance_stage1", dt.date(2026, 10, 12)),
            _row("day3_home_visit", dt.date(2026, 11, 23)),
            _row("first_day_contact", dt.date(2026, 11, 16), status="cancelled"),
            _row("first_day_contact", dt.date(2026, 7, 1)),  # last school year
            _row("first_day_contact", dt.date(2026, 11, 19), pupil_id="P2"),
            _row("la_referral", dt.date(2026, 11, 2))]
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(scheduled_actions), rows)
            await conn.execute(insert(replies), [
                {"reply_id": f"R{n}", "pupil_id": pupil_id, "school_urn": URN,
                 "contact_ref": "P1/contact/1", "received_at": at(day, 11)}
                for n, (pupil_id, day) in enumerate([("P1", dt.date(2026, 11, 19)),
                                                     ("P1", dt.date(2026, 7, 30)),
                                                     ("P2", dt.date(2026, 11, 19))])])
        async with engine.connect() as conn:
            # register_removal needs nothing but the year's outreach (and is planned off roll).
            plan = await outreach.plan(conn, due(register_removal.ID, MONDAY), school(), pupil(),
                                       False, at(MONDAY, 10))
    finally:
        await engine.dispose()
    assert plan.staff_details == {"year_family_contacts": 3, "year_replies": 1,
                                  "year_home_visits": 1,
                                  "stage1_sent_on": "2026-10-12", "school_contact": "R Baish",
                                  "act_by": "2026-11-30"}
