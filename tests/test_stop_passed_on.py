"""docs/rules.md "family_opted_out": a parent's STOP reaches the attendance officer once, with
what happens instead; and the weekly update to an opted-out family does not send a "could not
be reached" notice every Friday afternoon."""

from __future__ import annotations

import datetime as dt

from tests.factories import MONDAY, contact, mark, pupil, school
from tests.scenarios import body, emails_about, timeline
from tests.stack import Stack

FRIDAY = MONDAY + dt.timedelta(days=4)
MUM, DAD = "+447700900001", "+447700900002"
OPTED_OUT_SUBJECT = "asked for no more texts"


def _family() -> dict[str, object]:
    mum = {**contact(1, phone=MUM, email="mum@example.com", name="Jane Smith"),
           "attendance_updates": True}
    dad = {**contact(2, phone=DAD, email=None, name="John Smith"), "relationship": "father"}
    return school([pupil("P1", "Tom", contacts=[mum, dad])])


async def test_stop_is_passed_on_once_with_what_happens_instead(stack: Stack) -> None:
    await stack.put_school(_family())
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    await stack.twilio.wait_for_messages(1)
    await stack.sent(2)

    await stack.inbound_sms(MUM, "STOP")
    await stack.notifier_events_processed(1)
    await stack.handed_over()
    [told] = await emails_about(stack, OPTED_OUT_SUBJECT, 1)
    assert told["To"] == "attendance@millbrook.example"
    text = body(told)
    assert "Tom Smith (P1)" in text
    assert "emails to Jane Smith still go" in text
    assert "then John Smith (father) is tried" in text
    assert MUM not in text and "STOP" in text

    await stack.inbound_sms(MUM, "stop")  # a second STOP: already opted out, nothing new
    await stack.notifier_events_processed(1)
    await stack.handed_over()
    assert len([m for m in stack.smtp.messages if OPTED_OUT_SUBJECT in str(m["Subject"])]) == 1
    decisions = [d for d in (await timeline(stack, "P1"))["decisions"]
                 if d["rule"] == "family_opted_out"]
    assert [d["outcome"] for d in decisions] == ["requested"]


async def test_an_opted_out_family_is_not_reported_unreachable_every_friday(
        stack: Stack) -> None:
    await stack.put_school(_family())
    await stack.inbound_sms(MUM, "STOP")  # before any text: every school's texts stop
    await stack.notifier_events_processed(1)
    await stack.handed_over()
    await emails_about(stack, OPTED_OUT_SUBJECT, 1)
    stack.at(8, 52)
    await stack.publish(mark("P1", "/"))
    await stack.processed()
    for friday in (FRIDAY, FRIDAY + dt.timedelta(days=7)):
        stack.at(16, 0, day=friday)
        await stack.run_due()
        await stack.handed_over()
        await stack.dispatch_due()
    updates = await stack.notifications(school_urn="123456")
    assert {n["rule"] for n in updates} >= {"attendance_update"}
    assert all(n["status"] != "sent" for n in updates if n["rule"] == "attendance_update")
    assert not [m for m in stack.smtp.messages if "could not be reached" in str(m["Subject"])]
