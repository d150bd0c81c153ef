"""docs/rules.md "The rules" `first_day_contact`, end to end: register marks on RabbitMQ become a parent's
text (through the real twilio client, to the loopback stub) and email (to the SMTP sink)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from triage.models import decisions, scheduled_actions
from triage.rules.recipients import COURT_ORDER

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.stack import Stack


async def _actions(stack: Stack) -> dict[str, tuple[str, str]]:
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(select(scheduled_actions.c.pupil_id, scheduled_actions.c.status,
                                         scheduled_actions.c.reason)
                                  .where(scheduled_actions.c.rule == "first_day_contact"))
        return {pupil_id: (status, reason) for pupil_id, status, reason in rows}


async def test_parent_of_each_unexplained_absence_gets_one_text_and_one_email(stack: Stack) -> None:
    response = await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email="p1@example.com"),
                                       contact(2, phone="+447700900002", email="p1b@example.com")]),
        pupil("P2", "Tom", contacts=[contact(1, phone="+447700900003", email="p2@example.com")]),
        pupil("P3", "Ada", contacts=[contact(1, phone="+447700900004", email="p3@example.com")]),
    ]))
    assert response.status_code == 200, response.text
    await stack.publish(mark("P1", "N"), mark("P2", "N"), mark("P3", "/"))
    await stack.processed()

    stack.at(9, 29)
    assert await stack.run_due() == 0, "nothing is due before not_before (09:30)"
    stack.at(9, 30)
    assert await stack.run_due() == 2

    texts = await stack.twilio.wait_for_messages(2)
    emails = await stack.smtp.wait_for(2)
    assert sorted(t["to"] for t in texts) == ["+447700900001", "+447700900003"]
    assert {t["from_"] for t in texts} == {"+447700900999"}
    assert any("Sally" in t["body"] for t in texts) and any("Tom" in t["body"] for t in texts)
    assert sorted(e["To"] for e in emails) == ["p1@example.com", "p2@example.com"]
    assert all("Millbrook Primary School" in e["Subject"] for e in emails)
    await stack.sent(4)
    sent = await stack.notifications(school_urn="123456")
    assert len(sent) == 4 and {n["status"] for n in sent} == {"sent"}
    assert {n["rule"] for n in sent} == {"first_day_contact"}
    assert all(n["provider_id"] for n in sent)


async def test_parent_who_called_in_before_0930_gets_no_text(stack: Stack) -> None:
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001")]),
        pupil("P2", "Tom", contacts=[contact(1, phone="+447700900002", email=None)]),
    ]))
    first = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    await stack.publish(mark("P1", "N", recorded=first), mark("P2", "N", recorded=first))
    # The parent rings the office at 09:10; the mark is amended to I (illness).
    stack.at(9, 10)
    await stack.publish(mark("P1", "I", recorded=first + dt.timedelta(minutes=18)))
    await stack.processed()

    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900002"]
    actions = await _actions(stack)
    assert actions["P1"][0] == "cancelled" and "I" in actions["P1"][1]
    assert actions["P2"][0] == "requested"
    assert await stack.notifications(pupil_id="P1") == []


async def test_amendment_arriving_before_the_original_still_wins(stack: Stack) -> None:
    """Contract §2: the later recorded_at wins whatever the arrival order."""
    await stack.put_school(school([pupil("P1"), pupil("P2", "Tom", contacts=[
        contact(1, phone="+447700900002", email=None)])]))
    first = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    stack.at(9, 15)
    await stack.publish(mark("P1", "I", recorded=first + dt.timedelta(minutes=20)))
    await stack.publish(mark("P1", "N", recorded=first), mark("P2", "N", recorded=first))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900002"]
    assert (await _actions(stack)).get("P1") is None


async def test_mark_amended_after_scheduling_is_rechecked_at_send_time(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    # Delete nothing, amend nothing through the rules: change the stored mark under the
    # scheduler, as a late-arriving amendment in another replica would.
    from sqlalchemy import update
    from triage.models import marks
    async with stack.triage.engine.begin() as conn:
        await conn.execute(update(marks).values(code="M"))
    stack.at(9, 30)
    assert await stack.run_due() == 1
    assert (await _actions(stack))["P1"][0] == "cancelled"
    assert stack.twilio.attempts == []


async def test_duplicate_event_and_pm_mark_produce_one_contact_per_day(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    event = mark("P1", "N")
    stack.at(13, 25)
    await stack.publish(event, event, mark("P1", "N", session="PM",
                                           recorded=dt.datetime(2026, 11, 23, 13, 20, tzinfo=LONDON)))
    await stack.processed()
    stack.at(13, 30)
    assert await stack.run_due() == 1
    await stack.twilio.wait_for_messages(1)
    stack.at(14, 0)
    assert await stack.run_due() == 0
    async with stack.triage.engine.connect() as conn:
        logged = (await conn.execute(select(decisions.c.outcome).where(
            decisions.c.rule == "first_day_contact"))).scalars().all()
    assert sorted(logged) == ["requested", "scheduled"]
    assert len(stack.twilio.messages) == 1


async def test_second_day_of_an_absence_is_not_a_first_day(stack: Stack) -> None:
    """Episodes run over school days: Friday 20th is a closure, so Thursday 19th then Monday
    23rd is one episode and Monday gets no first-day contact."""
    await stack.put_school(school([pupil("P1")], policy={"max_action_age_days": 5}))
    thursday = dt.date(2026, 11, 19)
    await stack.publish(mark("P1", "N", day=thursday,
                             recorded=dt.datetime(2026, 11, 19, 8, 52, tzinfo=LONDON)),
                        mark("P1", "N"))
    await stack.processed()
    actions = await _actions(stack)
    assert list(actions) == ["P1"]
    async with stack.triage.engine.connect() as conn:
        keys = (await conn.execute(select(scheduled_actions.c.dedup_key).where(
            scheduled_actions.c.rule == "first_day_contact"))).scalars().all()
    assert keys == ["first_day_contact:123456:P1:2026-11-19"]


async def test_stale_marks_from_an_old_register_import_text_nobody(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    last_week = dt.date(2026, 11, 16)
    await stack.publish(mark("P1", "N", day=last_week,
                             recorded=dt.datetime(2026, 11, 16, 8, 52, tzinfo=LONDON)))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() == 0
    status, reason = (await _actions(stack))["P1"]
    assert status == "suppressed" and "stale" in reason
    assert stack.twilio.attempts == []


async def test_no_contact_parent_is_skipped_for_the_next_in_priority(stack: Stack) -> None:
    """docs/rules.md "Contacting people": a contact with no_contact (e.g. a court order) is never contacted."""
    await stack.put_school(school([pupil("P1", contacts=[
        contact(1, phone="+447700900001", email=None, no_contact=True),
        contact(2, phone="+447700900002", email=None),
    ])]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900002"]
    async with stack.triage.engine.connect() as conn:
        inputs = (await conn.execute(
            select(decisions.c.inputs).where(decisions.c.outcome == "requested"))).scalar_one()
    assert inputs["skipped"] == [{"ref": "P1/contact/1", "why": COURT_ORDER}]


async def test_scheduled_contact_survives_a_restart(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    await stack.triage.stop()
    from triage.app import TriageService
    stack.triage = TriageService(stack.triage_settings, stack.clock, run_scheduler=False)
    await stack.triage.start()
    stack.at(9, 30)
    assert await stack.run_due() == 1
    assert [t["to"] for t in await stack.twilio.wait_for_messages(1)] == ["+447700900001"]


async def test_families_messages_carry_no_code_or_comment(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Sally", contacts=[contact(1, name="Jane Doe")])]))
    await stack.publish(mark("P1", "N", comment="Mum said hospital appointment, unconfirmed"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    text = (await stack.twilio.wait_for_messages(1))[0]["body"]
    email = (await stack.smtp.wait_for(1))[0]
    bodies = [text, email.get_body(("plain",)).get_content(), email["Subject"]]
    for body in bodies:
        assert "Sally" in body or "Millbrook" in body
        assert "hospital" not in body and "Smith" not in body
        assert " N " not in f" {body} " and "code" not in body.lower()
    # Sent on the day: "today" (one SMS segment), the date in words in the email.
    assert "Sally is not in school today" in text
    assert "Monday 23 November 2026" in bodies[1]
    assert MONDAY.isoformat() not in text
