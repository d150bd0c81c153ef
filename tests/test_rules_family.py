"""docs/rules.md "Siblings" and §3 `attendance_update`, through the real broker."""

from __future__ import annotations

import datetime as dt

from triage.scheduler import Scheduler

from tests.factories import MONDAY, contact, mark, pupil, school
from tests.scenarios import timeline
from tests.stack import Stack

FRIDAY = dt.date(2026, 11, 27)


async def _one_text_for_sally_and_tom_one_for_ada(stack: Stack) -> None:
    texts = await stack.twilio.wait_for_messages(2)
    by_phone = {t["to"]: t["body"] for t in texts}
    assert set(by_phone) == {"+447700900001", "+447700900003"}
    assert "Sally and Tom" in by_phone["+447700900001"]
    await stack.sent(2)
    assert len(stack.twilio.messages) == 2


async def test_two_absent_siblings_with_the_same_contact_get_one_message_naming_both(
    stack: Stack,
) -> None:
    mum = contact(1, phone="+447700900001", email=None)
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[mum]), pupil("P2", "Tom", contacts=[mum]),
        pupil("P3", "Ada", contacts=[contact(1, phone="+447700900003", email=None)]),
    ]))
    await stack.publish(mark("P1"), mark("P2"), mark("P3"))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() == 3
    await _one_text_for_sally_and_tom_one_for_ada(stack)
    for pupil_id in ("P1", "P2"):  # the decision is still recorded per pupil
        [requested] = [d for d in (await timeline(stack, pupil_id))["decisions"]
                       if d["outcome"] == "requested"]
        assert requested["inputs"]["request_id"] == (
            "first_day_contact:123456:P1:2026-11-23+first_day_contact:123456:P2:2026-11-23")


async def test_weekly_attendance_update_goes_only_to_contacts_who_opted_in(stack: Stack) -> None:
    opted_in = {**contact(1, phone="+447700900001", email=None), "attendance_updates": True}
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[opted_in]),
        pupil("P2", "Tom", contacts=[contact(1, phone="+447700900002", email=None)]),
    ]))
    await stack.publish(*(mark(p, "/", day=MONDAY, session=s) for p in ("P1", "P2")
                          for s in ("AM", "PM")))
    await stack.processed()
    stack.at(15, 59, day=FRIDAY)
    assert await stack.run_due() == 0
    stack.at(16, 0, day=FRIDAY)
    assert await stack.run_due() == 1
    [text] = await stack.twilio.wait_for_messages(1)
    assert text["to"] == "+447700900001" and "100%" in text["body"]
    stack.at(17, 0, day=FRIDAY)
    assert await stack.run_due() == 0, "one update per pupil per period"


async def test_timeline_shows_marks_decisions_and_requests_behind_the_token(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await stack.publish(mark("P1", "N", comment="office note"))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    history = await timeline(stack, "P1")
    assert [(m["date"], m["session"], m["code"]) for m in history["marks"]] == [
        ("2026-11-23", "AM", "N")]
    assert [d["outcome"] for d in history["decisions"]
            if d["rule"] == "first_day_contact"] == ["scheduled", "requested"]
    assert history["notifications_requested"][0]["rule"] == "first_day_contact"
    assert history["rates"]["possible_sessions"] == 1
    assert "office note" not in str(history)
    anonymous = await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                           params={"school_urn": "123456"},
                                           headers={"Authorization": "Bearer wrong"})
    assert anonymous.status_code == 401
    missing = await stack.triage_api.get("/api/v1/pupils/NOPE/timeline",
                                         params={"school_urn": "123456"})
    assert missing.status_code == 404


async def test_policy_upload_rejects_unknown_keys_and_out_of_range_values(stack: Stack) -> None:
    for policy in ({"persistent_at": 0.1, "typo_key": 1}, {"hysteresis": 0.5},
                   {"penalty_notice": {"codes": ["I"]}}, {"referral_below": 0.95},
                   {"attendance_update": {"weekday": "sunday"}}):
        response = await stack.put_school(school([pupil("P1")], policy=policy))
        assert response.status_code == 422, policy
    ok = await stack.put_school(school([pupil("P1")], policy={
        "stage1_below": 0.95, "referral_below": 0.9, "hysteresis": 0.02,
        "penalty_notice": {"sessions": 8, "weeks": 6}}))
    assert ok.status_code == 200, ok.text


async def test_siblings_get_one_message_when_the_scheduler_batch_would_split_them(
    stack: Stack,
) -> None:
    """A 105,000-pupil morning settles thousands of actions in batches; a family cut in two
    by a batch boundary must still get one message."""
    mum = contact(1, phone="+447700900001", email=None)
    await stack.put_school(school([
        pupil("P1", "Ada", contacts=[contact(1, phone="+447700900003", email=None)]),
        pupil("P2", "Sally", contacts=[mum]), pupil("P3", "Tom", contacts=[mum]),
    ]))
    await stack.publish(mark("P1"), mark("P2"), mark("P3"))
    await stack.processed()
    stack.at(9, 30)
    triage = stack.triage
    assert triage.relay is not None
    one_at_a_time = Scheduler(triage.engine, stack.clock, triage.schools, triage.relay.wake,
                              batch_size=1)
    assert await one_at_a_time.run_due() == 3
    await _one_text_for_sally_and_tom_one_for_ada(stack)
