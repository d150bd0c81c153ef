"""docs/rules.md "Parents who tell the school first", end to end: a parent on the roster texts
before anybody asked; the school sees a pending explanation, the 09:30 text is not sent, and
the office accepts (re-codes) or dismisses it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from triage.models import scheduled_actions

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.scenarios import register, tasks
from tests.stack import Stack

TOM_PARENT = "+447700900001"
REPORT = "Tom has a temperature, not coming in today"


async def _pending(stack: Stack, urn: str = "123456") -> list[dict[str, Any]]:
    response = await stack.triage_api.get(f"/api/v1/schools/{urn}/explanations",
                                          params={"status": "pending"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _first_day_action(stack: Stack, pupil_id: str = "P1") -> tuple[str, str]:
    async with stack.triage.engine.connect() as conn:
        row = (await conn.execute(
            select(scheduled_actions.c.status, scheduled_actions.c.reason)
            .where(scheduled_actions.c.rule == "first_day_contact",
                   scheduled_actions.c.pupil_id == pupil_id))).one()
        return row.status, row.reason


async def _report_then_register(stack: Stack) -> dict[str, Any]:
    """07:45 the parent texts; 08:50 the register says N; 09:30 the scheduler runs."""
    await stack.put_school(school([
        pupil("P1", "Tom", contacts=[contact(1, phone=TOM_PARENT, email="tom.parent@example.com"),
                                     contact(2, phone="+447700900002", email=None)]),
        pupil("P2", "Ada", contacts=[contact(1, phone="+447700900003", email=None)]),
    ]))
    stack.at(7, 45)
    response = await stack.inbound_sms(TOM_PARENT, REPORT)
    assert response.status_code == 200
    await stack.notifier_events_processed(1)
    [pending] = await _pending(stack)
    stack.at(8, 50)
    await stack.publish(mark("P1", "N", recorded=dt.datetime.combine(
        MONDAY, dt.time(8, 50), tzinfo=LONDON)))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    return pending


async def test_a_parent_who_texts_first_is_shown_to_the_school_and_not_chased(
        stack: Stack) -> None:
    pending = await _report_then_register(stack)
    assert pending["text"] == REPORT and pending["matched"] is True
    assert pending["date"] == MONDAY.isoformat()
    assert [p["given_name"] for p in pending["pupils"]] == ["Tom"]
    assert pending["contact_refs"] == ["P1/contact/1"]
    status, reason = await _first_day_action(stack)
    assert status == "cancelled" and "heard" in reason
    await stack.handed_over()
    assert stack.twilio.messages == [] and stack.smtp.messages == []

    # The office accepts it: the day's N becomes I through the normal pipeline.
    response = await stack.triage_api.post(
        f"/api/v1/schools/123456/explanations/{pending['id']}/accept",
        json={"code": "I", "by": "officer-1"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted" and response.json()["code"] == "I"
    stack.published_by_triage(1)
    await stack.processed()
    assert await _pending(stack) == []
    stack.at(16, 0)
    await stack.run_due()
    await stack.handed_over()
    assert stack.twilio.messages == [] and stack.smtp.messages == []

    timeline = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                           params={"school_urn": "123456"})).json()
    assert [(m["code"], m["source"]) for m in timeline["mark_history"]] == [
        ("N", "broker"), ("I", f"explanation:{pending['id']}")]
    assert [m["code"] for m in timeline["marks"]] == ["I"]
    assert [r["reply_id"] for r in timeline["replies"]] == [f"explanation:{pending['id']}"]
    [explained] = timeline["explanations"]
    assert explained["status"] == "accepted" and explained["decided_by"] == "officer-1"
    assert any(d["rule"] == "first_day_contact" and d["outcome"] == "cancelled"
               for d in timeline["decisions"])


async def test_a_report_spares_only_its_own_family_when_their_contacts_fall_due_together(
        stack: Stack) -> None:
    """The scheduler reads a batch's replies and day codes once for all its actions: Tom's
    parent's text must cancel Tom's contact, and only his, when Ada's falls due beside it."""
    await stack.put_school(school([
        pupil("P1", "Tom", contacts=[contact(1, phone=TOM_PARENT, email=None)]),
        pupil("P2", "Ada", contacts=[contact(1, phone="+447700900003", email=None)]),
    ]))
    stack.at(7, 45)
    assert (await stack.inbound_sms(TOM_PARENT, REPORT)).status_code == 200
    await stack.notifier_events_processed(1)
    stack.at(8, 50)
    await stack.publish(mark("P1", "N"), mark("P2", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    assert (await _first_day_action(stack, "P1"))[0] == "cancelled"
    assert (await _first_day_action(stack, "P2"))[0] == "requested"
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900003" and "Ada" in text["body"]


async def test_a_dismissed_report_lets_the_first_day_text_go_at_the_next_send_time(
        stack: Stack) -> None:
    pending = await _report_then_register(stack)
    assert (await _first_day_action(stack))[0] == "cancelled"
    stack.at(10, 0)
    response = await stack.triage_api.post(
        f"/api/v1/schools/123456/explanations/{pending['id']}/dismiss", json={"by": "officer-1"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dismissed"
    assert await _pending(stack) == []
    assert (await _first_day_action(stack))[0] == "pending"
    assert await stack.run_due() == 1
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == TOM_PARENT and "Tom" in text["body"]
    again = await stack.triage_api.post(
        f"/api/v1/schools/123456/explanations/{pending['id']}/accept",
        json={"code": "I", "by": "officer-1"})
    assert again.status_code == 409


async def test_a_number_on_two_schools_rosters_only_may_concern_each(stack: Stack) -> None:
    shared = "+447700900055"
    await stack.put_school(school([pupil("P1", "Tom", contacts=[contact(1, phone=shared)])]))
    await stack.put_school(school([pupil("Q1", "Ben", contacts=[contact(1, phone=shared)])],
                                  urn="654321"))
    stack.at(7, 45)
    await stack.inbound_sms(shared, REPORT)
    await stack.notifier_events_processed(1)
    [here] = await _pending(stack)
    [there] = await _pending(stack, "654321")
    assert here["matched"] is False and there["matched"] is False
    assert [p["pupil_id"] for p in here["pupils"]] == ["P1"]
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() == 1
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == shared


async def test_accepting_needs_a_classifying_code_and_an_n_to_re_code(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Tom", contacts=[contact(1, phone=TOM_PARENT)])]))
    stack.at(7, 45)
    await stack.inbound_sms(TOM_PARENT, REPORT)
    await stack.notifier_events_processed(1)
    [pending] = await _pending(stack)
    path = f"/api/v1/schools/123456/explanations/{pending['id']}/accept"
    bad = await stack.triage_api.post(path, json={"code": "N", "by": "x y"})
    assert bad.status_code == 422
    assert {p["loc"][-1] for p in bad.json()["detail"]} == {"code", "by"}
    early = await stack.triage_api.post(path, json={"code": "I", "by": "officer-1"})
    assert early.status_code == 409, "no mark yet: nothing to re-code"
    assert len(await _pending(stack)) == 1
    missing = await stack.triage_api.post("/api/v1/schools/123456/explanations/999/dismiss",
                                          json={"by": "officer-1"})
    assert missing.status_code == 404


async def test_a_number_on_no_roster_stays_unmatched_at_the_notifier(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Tom", contacts=[contact(1, phone=TOM_PARENT)])]))
    await stack.inbound_sms("+447700900077", "hello")
    await stack.notifier_events_processed(1)
    assert await _pending(stack) == []
    replies = (await stack.notifier_api.get("/api/v1/replies")).json()
    assert [(r["matched"], r["school_urn"]) for r in replies] == [(False, None)]


async def test_a_report_on_the_first_morning_means_no_home_visit_for_the_episode(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Tom", contacts=[
        contact(1, phone=TOM_PARENT, email=None)])]))
    stack.at(7, 45)
    await stack.inbound_sms(TOM_PARENT, REPORT)
    await stack.notifier_events_processed(1)
    for offset in range(3):  # Monday to Wednesday, N each morning
        await register(stack, "P1", MONDAY + dt.timedelta(days=offset))
    await stack.handed_over()
    assert await tasks(stack, "home_visit") == []
    assert [t["to"] for t in stack.twilio.messages] == []
    timeline = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                           params={"school_urn": "123456"})).json()
    visits = [a for a in timeline["actions"] if a["rule"] == "day3_home_visit"]
    assert visits and all(a["status"] == "cancelled" for a in visits)
    assert [m["code"] for m in timeline["marks"]] == ["N", "N", "N"], "only the school re-codes"
