"""docs/rules.md "The rules" `day3_home_visit` and `continuous_absence_10_days`, and §4 "Replies", through
the real broker: marks on RabbitMQ, the scheduler on a frozen clock, messages at the stubs."""

from __future__ import annotations

import datetime as dt

from broker_messages.contact import ReplyReceived

from tests.factories import LONDON, contact, mark, pupil, school
from tests.scenarios import body, emails_about, publish_reply, tasks, timeline
from tests.scenarios import register as absent
from tests.stack import Stack

THURSDAY = dt.date(2026, 11, 26)
FRIDAY = dt.date(2026, 11, 27)
MONDAY_AFTER = dt.date(2026, 11, 30)


async def test_day3_falls_on_the_monday_after_a_thursday_friday_absence(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await absent(stack, "P1", THURSDAY)
    await absent(stack, "P1", FRIDAY)
    assert await tasks(stack, "home_visit") == [], (
        "the weekend is not a school day: Friday is day 2")
    await absent(stack, "P1", MONDAY_AFTER)
    [task] = await tasks(stack, "home_visit")
    assert task["kind"] == "home_visit" and task["status"] == "open"
    assert task["episode_start"] == THURSDAY.isoformat() and task["pupil_id"] == "P1"
    emails = await emails_about(stack, "home visit", 2)
    assert sorted(e["To"] for e in emails) == ["attendance@millbrook.example",
                                              "dsl@millbrook.example"]
    await stack.handed_over()
    await stack.sent(3)  # Thursday's text and the two home-visit emails
    assert len(stack.twilio.messages) == 1, "one first-day text on Thursday, none after"


async def test_a_friday_inset_closure_does_not_count_as_a_day_of_absence(stack: Stack) -> None:
    """Friday 20 November is a closure: Thu 19, Mon 23, Tue 24 are days 1-3."""
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    stack.at(8, 0, day=dt.date(2026, 11, 19))
    await absent(stack, "P1", dt.date(2026, 11, 19))
    await absent(stack, "P1", dt.date(2026, 11, 23))
    assert await tasks(stack, "home_visit") == []
    await absent(stack, "P1", dt.date(2026, 11, 24))
    [task] = await tasks(stack, "home_visit")
    assert task["episode_start"] == "2026-11-19"


async def test_pupil_recoded_to_illness_on_day_2_gets_no_home_visit(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await absent(stack, "P1", THURSDAY)
    await absent(stack, "P1", FRIDAY)
    # The parent rings on Friday afternoon: Friday is re-coded I (illness).
    stack.at(14, 0, day=FRIDAY)
    await stack.publish(mark("P1", "I", day=FRIDAY, recorded=dt.datetime(
        2026, 11, 27, 14, 0, tzinfo=LONDON)))
    await stack.processed()
    await absent(stack, "P1", MONDAY_AFTER)
    assert await tasks(stack, "home_visit") == []


async def test_recoding_after_day3_was_scheduled_cancels_it_with_the_reason(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await absent(stack, "P1", THURSDAY)
    await absent(stack, "P1", FRIDAY)
    stack.at(8, 52, day=MONDAY_AFTER)
    await stack.publish(mark("P1", "N", day=MONDAY_AFTER))
    await stack.processed()
    stack.at(9, 5, day=MONDAY_AFTER)
    await stack.publish(mark("P1", "M", day=THURSDAY, recorded=dt.datetime(
        2026, 11, 30, 9, 5, tzinfo=LONDON)))
    await stack.processed()
    stack.at(9, 30, day=MONDAY_AFTER)
    await stack.run_due()
    assert await tasks(stack, "home_visit") == []
    day3 = [d for d in (await timeline(stack, "P1"))["decisions"] if d["rule"] == "day3_home_visit"]
    assert [d["outcome"] for d in day3] == ["scheduled", "cancelled"]
    assert "re-coded" in day3[-1]["reason"]


async def test_parent_who_replied_before_day_3_gets_no_home_visit(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await absent(stack, "P1", THURSDAY)
    stack.at(10, 0, day=THURSDAY)
    await publish_reply(stack, ReplyReceived(
        reply_id="SM-reply-1", school_urn="123456", pupil_ids=("P1",),
        contact_ref="P1/contact/1", received_at=stack.clock.now()))
    await absent(stack, "P1", FRIDAY)
    await absent(stack, "P1", MONDAY_AFTER)
    assert await tasks(stack, "home_visit") == []
    history = await timeline(stack, "P1")
    assert [r["reply_id"] for r in history["replies"]] == ["SM-reply-1"]
    day3 = [d for d in history["decisions"] if d["rule"] == "day3_home_visit"]
    assert day3[-1]["outcome"] == "cancelled" and "replied" in day3[-1]["reason"]


async def test_reply_cancels_a_pending_home_visit(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await absent(stack, "P1", THURSDAY)
    await absent(stack, "P1", FRIDAY)
    stack.at(8, 52, day=MONDAY_AFTER)
    await stack.publish(mark("P1", "N", day=MONDAY_AFTER))
    await stack.processed()
    stack.at(9, 10, day=MONDAY_AFTER)
    await publish_reply(stack, ReplyReceived(
        reply_id="SM-reply-2", school_urn="123456", pupil_ids=("P1",),
        contact_ref="P1/contact/1", received_at=stack.clock.now()))
    stack.at(9, 30, day=MONDAY_AFTER)
    await stack.run_due()
    assert await tasks(stack, "home_visit") == []


async def test_ten_school_days_of_unauthorised_absence_are_returned_to_the_la_once(
    stack: Stack,
) -> None:
    await stack.put_school(school([pupil("P1", contacts=[])], policy={"max_action_age_days": 20}))
    days: list[dt.date] = []
    day = dt.date(2026, 11, 23)
    while len(days) < 11:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    stack.at(17, 0, day=days[-1])
    # The office enters a fortnight's register at once; the 11th day changes nothing.
    await stack.publish(*(mark("P1", "O", day=d, session=s) for d in days for s in ("AM", "PM")))
    await stack.processed()
    await stack.run_due()
    [email] = await emails_about(stack, "continuous absence", 1)
    assert email["To"] == "attendance@la.example"
    assert "10 consecutive school days" in body(email)
    await stack.publish(mark("P1", "G", day=days[-1], session="PM", recorded=stack.clock.now()))
    await stack.processed()
    await stack.run_due()
    sent = await stack.notifications(rule="continuous_absence_10_days")
    assert len(sent) == 1


async def test_nine_days_of_unauthorised_absence_and_an_illness_are_not_returned(
    stack: Stack,
) -> None:
    await stack.put_school(school([pupil("P1", contacts=[])], policy={"max_action_age_days": 20}))
    days = [dt.date(2026, 11, 23) + dt.timedelta(days=i) for i in range(14)
            if (dt.date(2026, 11, 23) + dt.timedelta(days=i)).weekday() < 5]
    stack.at(17, 0, day=days[-1])
    await stack.publish(*(mark("P1", "I" if d == days[4] else "O", day=d) for d in days))
    await stack.processed()
    await stack.run_due()
    assert await stack.notifications(rule="continuous_absence_10_days") == []

