"""docs/rules.md "attendance_update" and "Contact order": information is not a chase. Every
carer who opted in and may be contacted gets the weekly update, on a Friday afternoon; a
first-day contact keeps its chain."""

from __future__ import annotations

import datetime as dt

from tests.factories import MONDAY, contact, mark, pupil, school
from tests.stack import Stack

FRIDAY = MONDAY + dt.timedelta(days=4)
MUM, DAD, GRAN = "+447700900001", "+447700900002", "+447700900003"


def _carers() -> dict[str, object]:
    return school([pupil("P1", "Tom", contacts=[
        {**contact(1, phone=MUM, email=None), "attendance_updates": True},
        {**contact(2, phone=DAD, email=None), "attendance_updates": True},
        {**contact(3, phone=GRAN, email=None), "attendance_updates": False},
        {**contact(4, phone="+447700900004", email=None, no_contact=True),
         "attendance_updates": True},
    ])])


async def test_every_carer_who_opted_in_gets_the_weekly_update(stack: Stack) -> None:
    await stack.put_school(_carers())
    stack.at(8, 52)
    await stack.publish(mark("P1", "/"))
    await stack.processed()
    stack.at(16, 0, day=FRIDAY)
    await stack.run_due()
    await stack.handed_over()
    texts = await stack.twilio.wait_for_messages(2)
    await stack.sent(2)
    assert sorted(t["to"] for t in texts) == [MUM, DAD]
    assert all("Tom" in t["body"] for t in texts)
    await stack.status_callback(texts[0]["sid"], "delivered")
    await stack.dispatch_due()
    assert len(stack.twilio.messages) == 2, "nobody else: granny did not opt in"


async def test_a_carer_who_opted_out_is_skipped_and_the_other_still_hears(
        stack: Stack) -> None:
    await stack.put_school(_carers())
    await stack.inbound_sms(MUM, "STOP")
    await stack.notifier_events_processed(1)
    stack.at(8, 52)
    await stack.publish(mark("P1", "/"))
    await stack.processed()
    stack.at(16, 0, day=FRIDAY)
    await stack.run_due()
    await stack.handed_over()
    await stack.twilio.wait_for_messages(1)
    await stack.sent(2)  # the father's text and the mother's, suppressed: both settled
    assert [t["to"] for t in stack.twilio.messages] == [DAD]


async def test_the_first_day_contact_still_stops_at_the_first_carer_reached(
        stack: Stack) -> None:
    await stack.put_school(_carers())
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == MUM
    await stack.sent(1)
    await stack.status_callback(text["sid"], "delivered")
    await stack.dispatch_due()
    assert len(stack.twilio.messages) == 1
