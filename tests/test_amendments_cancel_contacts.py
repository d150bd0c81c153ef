"""docs/rules.md "Amendments": re-coding an N cancels the contact wherever it waits, also after
triage handed it to the notifier, through both services, the real broker and the stubs."""

from __future__ import annotations

import datetime as dt

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.scenarios import timeline
from tests.stack import Stack, family_request, parent

EARLY = {"first_day_contact": {"not_before": "07:30"}}


async def test_text_held_for_quiet_hours_is_not_sent_after_the_office_recodes_the_mark(
        stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1)])], policy=EARLY))
    stack.at(7, 50)
    await stack.publish(mark("P1", "N", recorded=dt.datetime(2026, 11, 23, 7, 50,
                                                              tzinfo=LONDON)))
    await stack.processed()
    stack.at(7, 58)
    await stack.run_due()
    await stack.handed_over()
    await stack.dispatch_due()
    [email] = await stack.smtp.wait_for(1)
    assert email["To"] == "parent1@example.com", "email is not held by quiet hours"
    assert stack.twilio.attempts == [], "the text is held until 08:00"

    # 07:58:02: the parent rang; the office re-codes the mark to illness.
    recoded = dt.datetime(2026, 11, 23, 7, 58, 2, tzinfo=LONDON)
    stack.clock.set(recoded)
    await stack.publish(mark("P1", "I", recorded=recoded))
    await stack.processed()
    await stack.handed_over()  # the request, then its cancellation

    stack.at(8, 0)
    await stack.dispatch_due()
    stack.at(9, 0)
    await stack.dispatch_due()
    assert stack.twilio.attempts == [], "nothing is sent after the cancellation"
    [text] = [n for n in await stack.notifications(pupil_id="P1") if n["channel"] == "sms"]
    assert text["status"] == "cancelled"
    first_day = [d for d in (await timeline(stack, "P1"))["decisions"]
                 if d["rule"] == "first_day_contact"]
    assert [d["outcome"] for d in first_day] == ["scheduled", "requested", "cancelled"]
    assert "handed to the notifier is cancelled too" in first_day[-1]["reason"]


async def test_contact_asked_for_again_after_a_cancelled_one_goes_under_a_new_request(
        stack: Stack) -> None:
    """N, then I (cancelled after it was handed over), then N again: the family is contacted,
    once, under a request the notifier has not seen cancelled."""
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])],
                                  policy=EARLY))
    stack.at(7, 50)
    await stack.publish(mark("P1", "N", recorded=dt.datetime(2026, 11, 23, 7, 50,
                                                              tzinfo=LONDON)))
    await stack.processed()
    stack.at(7, 55)
    await stack.run_due()
    stack.at(7, 56)
    await stack.publish(mark("P1", "I", recorded=dt.datetime(2026, 11, 23, 7, 56,
                                                              tzinfo=LONDON)))
    await stack.processed()
    stack.at(7, 57)
    await stack.publish(mark("P1", "N", recorded=dt.datetime(2026, 11, 23, 7, 57,
                                                              tzinfo=LONDON)))
    await stack.processed()
    await stack.run_due()
    await stack.handed_over()  # request, cancellation, second request
    stack.at(8, 0)
    await stack.dispatch_due()
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900001"
    await stack.sent(1)  # settled before the clock moves on past the claim's expiry
    stack.at(8, 30)
    await stack.dispatch_due()
    assert len(stack.twilio.messages) == 1
    requests = {n["status"] for n in await stack.notifications(pupil_id="P1")}
    assert requests == {"cancelled", "sent"}


async def test_message_sent_the_day_after_the_absence_names_the_day(stack: Stack) -> None:
    """A Friday evening request is held to Monday 08:00: the text says which day."""
    friday = MONDAY - dt.timedelta(days=3)
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])],
                                  policy={"first_day_contact": {"not_before": "19:55"}},
                                  closures=[]))
    stack.at(19, 50, day=friday)
    await stack.publish(mark("P1", "N", day=friday, recorded=dt.datetime(
        2026, 11, 20, 19, 50, tzinfo=LONDON)))
    await stack.processed()
    stack.at(20, 0, day=friday)
    await stack.run_due()
    await stack.handed_over()
    stack.at(8, 0, day=MONDAY)
    await stack.dispatch_due()
    [text] = await stack.twilio.wait_for_messages(1)
    assert "Friday 20 November" in text["body"]
    assert "today" not in text["body"].lower()


async def test_held_text_for_two_siblings_names_only_the_one_still_unexplained(
        stack: Stack) -> None:
    shared = [contact(1, email=None)]
    await stack.put_school(school([pupil("P1", "Sally", contacts=shared),
                                   pupil("P2", "Tom", contacts=shared)], policy=EARLY))
    stack.at(7, 50)
    recorded = dt.datetime(2026, 11, 23, 7, 50, tzinfo=LONDON)
    await stack.publish(mark("P1", "N", recorded=recorded), mark("P2", "N", recorded=recorded))
    await stack.processed()
    stack.at(7, 58)
    await stack.run_due()
    await stack.handed_over()
    recoded = dt.datetime(2026, 11, 23, 7, 58, 2, tzinfo=LONDON)
    stack.clock.set(recoded)
    await stack.publish(mark("P1", "I", recorded=recoded))
    await stack.processed()
    await stack.handed_over()

    stack.at(8, 0)
    await stack.dispatch_due()
    [text] = await stack.twilio.wait_for_messages(1)
    assert "Tom" in text["body"] and "Sally" not in text["body"]
    stack.at(8, 30)
    await stack.dispatch_due()
    assert len(stack.twilio.messages) == 1, "Tom's family is texted once"


async def test_sibling_cancellation_that_overtakes_its_request_still_lets_the_other_go(
        stack: Stack) -> None:
    """The cancellation for Sally reaches the notifier before the shared request: Tom's
    family is still texted, about Tom only."""
    request = family_request(stack.clock.now(), parent(1),
                             pupils=(("P1", "Sally"), ("P2", "Tom")))
    await stack.publish_cancel(request.request_id, pupil_ids=("P1",))
    await stack.publish_requests(request)
    await stack.requests_processed()
    stack.at(9, 30)
    await stack.dispatch_due()
    [text] = await stack.twilio.wait_for_messages(1)
    assert "Tom" in text["body"] and "Sally" not in text["body"]
