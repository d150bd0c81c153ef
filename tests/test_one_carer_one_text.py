"""docs/rules.md "Siblings": one carer, one text. Absent children whose first contact is the same
carer share one message whatever their other contacts; if that carer is not reached, each
child's own chain goes on, naming only that child."""

from __future__ import annotations

from broker_messages.contact import follow_on_id
from notifier.models import contact_requests
from sqlalchemy import select

from tests.factories import contact, mark, pupil, school
from tests.stack import Stack

MUM, DAD, STEPDAD = "+447700900001", "+447700900002", "+447700900003"


def _siblings() -> dict[str, object]:
    return school([
        pupil("P1", "Tom", contacts=[contact(1, phone=MUM, email=None, name="Jane Smith"),
                                     contact(2, phone=DAD, email=None, name="John Smith")]),
        pupil("P2", "Ada", contacts=[contact(1, phone=MUM, email=None, name="Jane Smith"),
                                     contact(2, phone=STEPDAD, email=None, name="Sam Jones")]),
    ])


async def _morning(stack: Stack) -> dict[str, object]:
    await stack.put_school(_siblings())
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"), mark("P2", "N"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    [text] = await stack.twilio.wait_for_messages(1)
    return text


async def test_a_carer_of_two_absent_children_gets_one_text_naming_both(stack: Stack) -> None:
    text = await _morning(stack)
    assert text["to"] == MUM and "Tom" in text["body"] and "Ada" in text["body"]
    await stack.sent(1)
    await stack.status_callback(text["sid"], "delivered")
    await stack.dispatch_due()
    assert len(stack.twilio.messages) == 1, "mum was reached: nobody else is texted"


async def test_each_childs_chain_goes_on_alone_when_the_shared_carer_is_not_reached(
        stack: Stack) -> None:
    text = await _morning(stack)
    await stack.sent(1)
    await stack.status_callback(text["sid"], "undelivered", error_code=30003)
    texts = await stack.twilio.wait_for_messages(3)
    by_number = {t["to"]: t["body"] for t in texts[1:]}
    assert set(by_number) == {DAD, STEPDAD}
    assert "Tom" in by_number[DAD] and "Ada" not in by_number[DAD]
    assert "Ada" in by_number[STEPDAD] and "Tom" not in by_number[STEPDAD]

    # The stepfather answers about Ada: Ada's chain stops, Tom's is not touched.
    await stack.inbound_sms(STEPDAD, "Ada is with me")
    await stack.notifier_events_processed(1)
    timeline = (await stack.triage_api.get("/api/v1/pupils/P2/timeline",
                                           params={"school_urn": "123456"})).json()
    assert len(timeline["replies"]) == 1
    tom = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                      params={"school_urn": "123456"})).json()
    assert tom["replies"] == []


async def test_a_sibling_re_coded_after_the_split_is_cancelled_in_its_own_chain(
        stack: Stack) -> None:
    text = await _morning(stack)
    await stack.sent(1)
    await stack.status_callback(text["sid"], "undelivered", error_code=30003)
    await stack.twilio.wait_for_messages(3)
    await stack.sent(3)
    stack.at(10, 0)
    await stack.publish(mark("P2", "I", recorded=stack.clock.now()))
    await stack.processed()
    await stack.handed_over()
    async with stack.notifier.engine.connect() as conn:
        states = dict((await conn.execute(
            select(contact_requests.c.request_id, contact_requests.c.state))).all())
    [main] = [r for r in states if "/" not in r]
    assert states[main] == "split"
    assert states[follow_on_id(main, "P2")] == "cancelled", "Ada's own chain stops"
    assert states[follow_on_id(main, "P1")] == "chasing", "Tom's goes on"
