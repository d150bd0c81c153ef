"""Every unexplained absence reaches a person, and nothing untrue is sent (docs/rules.md
"family_unreachable", "Episodes", "Only school days count", "unexplained_not_recoded",
"Amendments"), through the real broker, database and stubs on a frozen clock."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from triage.models import decisions
from triage.rules.recipients import COURT_ORDER

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.scenarios import body, emails_about, tasks, timeline
from tests.scenarios import register as absent
from tests.stack import Stack

TUESDAY = MONDAY + dt.timedelta(days=1)
SATURDAY = dt.date(2026, 11, 21)
WORKER = {"name": "A Worker", "email": "a.worker@la.example", "phone": "+447700900200"}


async def _decisions(stack: Stack, rule: str) -> list[tuple[str, str, str]]:
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(select(decisions.c.pupil_id, decisions.c.outcome,
                                         decisions.c.reason)
                                  .where(decisions.c.rule == rule).order_by(decisions.c.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


# 1. A family nobody can contact is raised, never dropped --------------------------------------

async def test_roster_upload_names_every_pupil_whose_family_cannot_be_contacted(
        stack: Stack) -> None:
    response = await stack.put_school(school([
        pupil("P1"),
        pupil("P2", "Tom", contacts=[]),
        pupil("P3", "Ada", contacts=[contact(1, no_contact=True)]),
        pupil("P4", "Noor", contacts=[contact(1, phone=None, email=None)]),
        pupil("P5", "Rhian", contacts=[contact(1, no_contact=True), contact(2, phone=None)]),
    ]))
    assert response.status_code == 200, response.text
    assert response.json()["no_usable_contact"] == ["P2", "P3", "P4"]


async def test_child_whose_only_parent_is_under_a_court_order_reaches_officer_and_social_worker(
        stack: Stack) -> None:
    await stack.put_school(school([
        pupil("P1", contacts=[contact(1, no_contact=True)], social_worker=WORKER),
    ]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()

    emails = await emails_about(stack, "could not be reached", 2)
    assert sorted(e["To"] for e in emails) == ["a.worker@la.example",
                                              "attendance@millbrook.example"]
    text = body(emails[0])
    assert "Sally Smith (P1)" in text and "Monday 23 November 2026" in text
    assert "court order" in text, "the officer is told why nobody was contacted"
    assert stack.twilio.attempts == [], "the parent under the court order is never texted"
    [task] = await tasks(stack)
    assert (task["kind"], task["pupil_id"], task["status"]) == ("family_unreachable", "P1",
                                                                "open")
    assert task["episode_start"] == MONDAY.isoformat()
    [(pupil_id, outcome, reason)] = await _decisions(stack, "family_unreachable")
    assert (pupil_id, outcome) == ("P1", "requested") and COURT_ORDER in reason
    [*_, (_, first_day, why)] = await _decisions(stack, "first_day_contact")
    assert first_day == "suppressed" and "family_unreachable raised" in why


async def test_child_with_no_contacts_at_all_is_raised_to_the_officer_once(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[])]))
    await stack.publish(mark("P1", "N"), mark("P1", "N", session="PM"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    [email] = await emails_about(stack, "could not be reached", 1)
    assert email["To"] == "attendance@millbrook.example"
    assert "no parent or carer contacts" in body(email)
    stack.at(14, 0)
    await stack.run_due()
    assert len(await tasks(stack)) == 1
    assert len(await _decisions(stack, "family_unreachable")) == 1


# 2. A child seen for part of a day starts a new episode the next day ------------------------

async def _seen_monday_absent_tuesday(stack: Stack, morning: str) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    stack.at(13, 35)
    recorded = dt.datetime.combine(MONDAY, dt.time(13, 30), tzinfo=LONDON)
    await stack.publish(mark("P1", morning), mark("P1", "/", session="PM", recorded=recorded))
    await stack.processed()
    await absent(stack, "P1", TUESDAY)


async def test_child_at_a_medical_appointment_then_in_school_is_contacted_on_tuesday(
        stack: Stack) -> None:
    await _seen_monday_absent_tuesday(stack, "M")
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900001"
    [*_, (pupil_id, outcome, _)] = await _decisions(stack, "first_day_contact")
    assert (pupil_id, outcome) == ("P1", "requested")


async def test_child_who_arrived_after_registers_closed_was_seen_and_tuesday_is_a_first_day(
        stack: Stack) -> None:
    await _seen_monday_absent_tuesday(stack, "U")
    [text] = await stack.twilio.wait_for_messages(1)
    assert "Sally" in text["body"]


# 5. Marks on days that are not school days are refused ----------------------------------------

async def test_a_mark_dated_on_a_saturday_is_dead_lettered_and_never_counts(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P1", "N", day=SATURDAY, recorded=dt.datetime(
        2026, 11, 21, 9, 0, tzinfo=LONDON)))
    [dead] = await stack.dead_letters()
    assert dead.headers["x-rejection-reason"] == (
        "not a school day: Saturday 2026-11-21 is a weekend")
    await stack.processed()
    rates = (await timeline(stack, "P1"))["rates"]
    assert (rates["possible_sessions"], rates["unauthorised_sessions"]) == (0, 0)


async def test_http_ingest_refuses_closure_days_and_future_dates_item_by_item(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    good = mark("P1", "/")
    closure = mark("P1", "N", day=dt.date(2026, 11, 20))
    future = mark("P1", "N", day=dt.date(2026, 11, 24))
    response = await stack.post_events([good, closure, future])
    assert response.status_code == 422
    assert response.json()["accepted"] == [good["event_id"]]
    assert [(p["loc"], p["msg"]) for p in response.json()["detail"]] == [
        (["body", 1, "date"],
         "not a school day: 2026-11-20 is a closure day in the school's calendar"),
        (["body", 2, "date"], "date in the future: 2026-11-24"),
    ]
    await stack.processed()
    history = await timeline(stack, "P1")
    assert [m["source"] for m in history["mark_history"]] == ["api"]


# 6. An N left uncorrected is flagged ------------------------------------------------------------

async def test_n_still_standing_five_school_days_later_is_flagged_to_the_officer(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1"), pupil("P2", "Tom")]))
    await stack.publish(mark("P1", "N"), mark("P1", "N", session="PM"), mark("P2", "N"))
    await stack.processed()
    # The office finds out why Tom was away on Wednesday and corrects the register.
    stack.at(10, 0, day=dt.date(2026, 11, 25))
    await stack.publish(mark("P2", "I", recorded=dt.datetime(2026, 11, 25, 10, 0,
                                                             tzinfo=LONDON)))
    await stack.processed()

    stack.at(9, 29, day=dt.date(2026, 11, 30))  # five school days after Monday 23rd
    await stack.run_due()
    assert await tasks(stack, "unexplained_not_recoded") == []
    stack.at(9, 30, day=dt.date(2026, 11, 30))
    await stack.run_due()
    flagged = await tasks(stack, "unexplained_not_recoded")
    assert [(t["pupil_id"], t["episode_start"]) for t in flagged] == [("P1", "2026-11-23")]
    [email] = await emails_about(stack, "register still shows N", 1)
    assert email["To"] == "attendance@millbrook.example"
    assert "Sally Smith (P1)" in body(email) and "AM and PM sessions" in body(email)
    outcomes = [(p, o) for p, o, _ in await _decisions(stack, "unexplained_not_recoded")]
    assert outcomes == [("P1", "scheduled"), ("P1", "requested")], "Tom's was corrected"
    stack.at(14, 0, day=dt.date(2026, 11, 30))
    await stack.run_due()
    assert len(await tasks(stack, "unexplained_not_recoded")) == 1, "checked once a day"


# 7 and 8. The record keeps every mark, and a legacy J counts as attending ------------------

async def test_timeline_keeps_the_original_n_and_when_it_was_amended(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    first = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    amended = dt.datetime(2026, 11, 23, 9, 10, tzinfo=LONDON)
    # The amendment arrives first; the original N is still kept in the record.
    stack.at(9, 15)
    await stack.publish(mark("P1", "I", recorded=amended), mark("P1", "N", recorded=first))
    await stack.processed()
    history = await timeline(stack, "P1")
    assert [(m["code"], m["recorded_at"][11:16], m["current"])
            for m in history["mark_history"]] == [("N", "08:52", False), ("I", "09:10", True)]
    assert [(m["session"], m["code"]) for m in history["marks"]] == [("AM", "I")]


async def test_legacy_interview_code_counts_as_attending(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P1", "J"))
    await stack.processed()
    history = await timeline(stack, "P1")
    assert history["rates"]["possible_sessions"] == 1
    assert history["rates"]["attendance_rate"] == 1.0
    assert [(m["code"], m["stored_as"]) for m in history["mark_history"]] == [("J", "B")]


async def test_family_whose_every_number_fails_puts_a_task_on_the_officers_list(
        stack: Stack) -> None:
    """The notifier tried every contact (both opted out of texts): the officer and the social
    worker are emailed by the notifier, and triage records the decision and opens the task."""
    stack.twilio.reject_number("+447700900001", code=21610)
    stack.twilio.reject_number("+447700900002", code=21610)
    await stack.put_school(school([pupil("P1", contacts=[
        contact(1, phone="+447700900001", email=None),
        contact(2, phone="+447700900002", email=None),
    ], social_worker=WORKER)]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    emails = await emails_about(stack, "could not be reached", 2)
    assert sorted(e["To"] for e in emails) == ["a.worker@la.example",
                                              "attendance@millbrook.example"]
    assert "2 contacts were tried" in body(emails[0])
    reply_consumer = stack.triage.reply_consumer
    assert reply_consumer is not None
    await reply_consumer.wait_settled(1)
    [task] = await tasks(stack)
    assert (task["kind"], task["pupil_id"]) == ("family_unreachable", "P1")
    [(pupil_id, outcome, reason)] = await _decisions(stack, "family_unreachable")
    assert (pupil_id, outcome) == ("P1", "requested") and "2 contact(s) tried" in reason
