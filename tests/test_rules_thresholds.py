"""docs/rules.md "The rules" crossings with hysteresis (`la_referral`, `attendance_stage1`,
`persistent_absence`, `severe_absence`) and `penalty_notice_threshold`, through the broker."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from tests.factories import LONDON, contact, mark, pupil, school
from tests.scenarios import emails_about, timeline
from tests.stack import Stack


def sessions(start: dt.date) -> Iterator[tuple[dt.date, str]]:
    day = start
    while True:
        if day.weekday() < 5 and day != dt.date(2026, 11, 20):
            yield day, "AM"
            yield day, "PM"
        day += dt.timedelta(days=1)


class Register:
    """Marks one session after another, each a fresh mark entered that evening."""

    def __init__(self, stack: Stack, pupil_id: str, start: dt.date) -> None:
        self.stack = stack
        self.pupil_id = pupil_id
        self.slots = sessions(start)

    async def enter(self, code: str, count: int) -> None:
        marks = []
        for _ in range(count):
            day, session = next(self.slots)
            marks.append((day, session))
        self.stack.at(18, 0, day=marks[-1][0])
        await self.stack.publish(*(mark(self.pupil_id, code, day=d, session=s,
                                        recorded=dt.datetime.combine(d, dt.time(17), LONDON))
                                   for d, s in marks))
        await self.stack.processed()
        await self.stack.run_due()


async def fired(stack: Stack, rule: str) -> list[dict[str, Any]]:
    return [d for d in (await timeline(stack, "P1"))["decisions"]
            if d["rule"] == rule and d["outcome"] == "requested"]


async def test_pupil_hovering_at_90_percent_is_referred_once_not_daily(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])],
                                  policy={"max_action_age_days": 30}))
    # 116 sessions: from the start of term, so every mark falls on a school day.
    register = Register(stack, "P1", dt.date(2026, 9, 7))
    await register.enter("/", 18)
    await register.enter("I", 2)      # 18/20 = 90%: not below the line
    assert await fired(stack, "la_referral") == []
    await register.enter("I", 1)      # 18/21 = 85.7%: below, referred
    assert len(await fired(stack, "la_referral")) == 1
    for _ in range(3):                # hovering: back to 90%, below again, never 91%
        await register.enter("/", 6)
        await register.enter("I", 1)
    assert len(await fired(stack, "la_referral")) == 1
    [email] = await emails_about(stack, "attendance referral", 1)
    assert email["To"] == "attendance@la.example"
    await register.enter("/", 60)     # recovered past the line by the hysteresis: re-armed
    await register.enter("I", 14)
    referrals = await fired(stack, "la_referral")
    assert len(referrals) == 2
    assert referrals[1]["dedup_key"].endswith("crossing-2")


async def test_rates_are_not_acted_on_before_min_possible_sessions(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])],
                                  policy={"max_action_age_days": 30}))
    register = Register(stack, "P1", dt.date(2026, 11, 2))
    await register.enter("O", 19)     # 0% attendance, but only 19 possible sessions
    assert await fired(stack, "severe_absence") == []
    await register.enter("O", 1)
    assert len(await fired(stack, "severe_absence")) == 1


async def test_stage1_texts_the_parent_and_emails_the_attendance_officer(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Sally", contacts=[contact(1, email=None)])],
                                  policy={"max_action_age_days": 30}))
    register = Register(stack, "P1", dt.date(2026, 10, 12))
    await register.enter("/", 23)
    await register.enter("M", 2)      # 92%: not below
    assert await fired(stack, "attendance_stage1") == []
    await register.enter("M", 1)      # 88.5%
    [text] = [m for m in await stack.twilio.wait_for_messages(1) if "attendance" in m["body"]]
    assert "Sally" in text["body"] and "88.5%" in text["body"]
    assert " M " not in text["body"] and "Smith" not in text["body"]
    [email] = await emails_about(stack, "attendance stage 1", 1)
    assert email["To"] == "attendance@millbrook.example"


async def test_persistent_absence_at_10_percent_is_made_known_to_the_la(stack: Stack) -> None:
    """The example school policy: "all PA cases are also automatically made known to the
    County Attendance team", at 10% absence, before attendance falls below the 90% referral
    line."""
    await stack.put_school(school([pupil("P1", "Sally", contacts=[contact(1, email=None)])],
                                  policy={"max_action_age_days": 30,
                                          "stage1_below": 0.90}))
    register = Register(stack, "P1", dt.date(2026, 10, 12))
    await register.enter("/", 18)
    await register.enter("M", 2)      # absence 10%, attendance 90%: PA, not yet a referral
    assert len(await fired(stack, "persistent_absence")) == 1
    assert await fired(stack, "la_referral") == []
    emails = await emails_about(stack, "persistent", 2)
    assert sorted(e["To"] for e in emails) == ["attendance@la.example",
                                              "attendance@millbrook.example"]


async def test_a_school_can_keep_pa_cases_from_the_la(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", "Sally", contacts=[contact(1, email=None)])],
                                  policy={"max_action_age_days": 30, "stage1_below": 0.90,
                                          "persistent_absence": {"inform_la": False}}))
    register = Register(stack, "P1", dt.date(2026, 10, 12))
    await register.enter("/", 18)
    await register.enter("M", 2)
    await stack.sent(2)
    sent = await stack.notifications(rule="persistent_absence")
    assert sorted(n["recipient_role"] for n in sent) == ["attendance_officer", "parent"]


def two_terms(document: dict[str, Any]) -> dict[str, Any]:
    """Autumn term with a half term (26-30 October 2026)."""
    document["calendar"] = {"terms": [{"start": "2026-09-03", "end": "2026-10-23"},
                                      {"start": "2026-11-02", "end": "2026-12-18"}],
                            "closures": []}
    document["staff"].append({"role": "headteacher", "name": "Head",
                              "email": "head@millbrook.example"})
    return document


async def _unauthorised_on(stack: Stack, mondays: list[dt.date]) -> None:
    """One G session on each Monday, and a second on the first Monday: 10 in all."""
    days = [(mondays[0], "PM"), *((m, "AM") for m in mondays)]
    assert len(days) == 10
    stack.at(18, 0, day=mondays[-1])
    await stack.publish(*(mark("P1", "G", day=d, session=s) for d, s in days))
    await stack.processed()
    await stack.run_due()


async def test_ten_unauthorised_sessions_over_9_weeks_across_half_term_trigger_penalty_alert(
    stack: Stack,
) -> None:
    await stack.put_school(two_terms(school([pupil("P1", contacts=[])])))
    # 9 school weeks, 5 Oct - 7 Dec, spanning the half-term week.
    mondays = [dt.date(2026, 10, 5), dt.date(2026, 10, 12), dt.date(2026, 10, 19),
               dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16),
               dt.date(2026, 11, 23), dt.date(2026, 11, 30), dt.date(2026, 12, 7)]
    await _unauthorised_on(stack, mondays)
    emails = await emails_about(stack, "penalty notice", 2)
    assert sorted(e["To"] for e in emails) == ["attendance@millbrook.example",
                                              "head@millbrook.example"]
    [decision] = await fired(stack, "penalty_notice_threshold")
    assert decision["dedup_key"].endswith("2026-10-05")


async def test_half_term_week_is_not_a_school_week_in_the_penalty_window(stack: Stack) -> None:
    await stack.put_school(two_terms(school([pupil("P1", contacts=[])])))
    # 11 calendar weeks, 28 Sep - 7 Dec, but 10 school weeks: the half term does not count.
    mondays = [dt.date(2026, 9, 28), dt.date(2026, 10, 5), dt.date(2026, 10, 19),
               dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16),
               dt.date(2026, 11, 23), dt.date(2026, 11, 30), dt.date(2026, 12, 7)]
    await _unauthorised_on(stack, mondays)
    assert len(await fired(stack, "penalty_notice_threshold")) == 1


async def test_ten_unauthorised_sessions_over_11_school_weeks_do_not(stack: Stack) -> None:
    await stack.put_school(two_terms(school([pupil("P1", contacts=[])])))
    mondays = [dt.date(2026, 9, 21), dt.date(2026, 9, 28), dt.date(2026, 10, 5),
               dt.date(2026, 10, 12), dt.date(2026, 10, 19), dt.date(2026, 11, 9),
               dt.date(2026, 11, 16), dt.date(2026, 11, 23), dt.date(2026, 12, 7)]
    days = [(m, "AM") for m in mondays] + [(dt.date(2026, 12, 8), "AM")]
    stack.at(18, 0, day=dt.date(2026, 12, 8))
    await stack.publish(*(mark("P1", "G", day=d, session=s) for d, s in days))
    await stack.processed()
    await stack.run_due()
    assert await fired(stack, "penalty_notice_threshold") == []
    assert [d for d in (await timeline(stack, "P1"))["decisions"]
            if d["rule"] == "penalty_notice_threshold"] == []

