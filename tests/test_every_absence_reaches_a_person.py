"""A property, through both services and the real broker: for any fortnight of marks and
amendments for one pupil, arriving in any order within the day, every first day of an absence
episode whose mark ends as N yields exactly one of {the family contacted, `family_unreachable`
raised}, and no family is contacted about a day whose final marks hold no N.

("First day": the previous school day, by the final marks, was not a day of absence on which
the child was never seen — docs/rules.md "Episodes". Later days of an episode are the day-3
visit's business, not a new contact.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from typing import Any

from broker_messages.codes import UNEXPLAINED
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from notifier.models import notifications
from sqlalchemy import func, select
from triage.models import decisions

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.stack import Stack

FORTNIGHT = [MONDAY + dt.timedelta(days=n) for n in range(12) if (MONDAY + dt.timedelta(
    days=n)).weekday() < 5]
CODES = ("N", "N", "N", "I", "/", "M", "U", "O")
FAMILIES = {
    "reachable": [contact(1, email=None)],
    "court_order": [contact(1, no_contact=True)],
    "none": [],
}
_urns = itertools.count(700000)

# Per school day: the AM register's marks in the order they were recorded (the last one
# stands), and optionally PM marks, entered after lunch.
day_marks = st.tuples(st.lists(st.sampled_from(CODES), min_size=1, max_size=3),
                      st.lists(st.sampled_from(CODES), max_size=2))


# The oracle's own reading of docs/rules.md "Episodes", independent of the code under test.
SEEN = {"/", "\\", "L", "U", "K", "V", "P", "W", "B"}
ABSENT = {"I", "M", "N", "O", "G", "C", "E", "S", "R", "T", "J1", "C1", "C2"}


def _absent_and_unseen(codes: dict[str, str]) -> bool:
    values = set(codes.values())
    return not values & SEEN and bool(values & ABSENT)


def _final(versions: list[str]) -> str | None:
    return versions[-1] if versions else None


def _expected_first_days(plan: list[tuple[list[str], list[str]]]) -> dict[dt.date, bool]:
    """Per school day: must somebody be told (True), or may nobody be contacted (False)."""
    expected: dict[dt.date, bool] = {}
    previous_absent = False
    for day, (am, pm) in zip(FORTNIGHT, plan, strict=True):
        codes = {s: c for s, c in (("AM", _final(am)), ("PM", _final(pm))) if c}
        expected[day] = UNEXPLAINED in codes.values() and not previous_absent
        previous_absent = _absent_and_unseen(codes)
    return expected


async def _enter(stack: Stack, urn: str, day: dt.date, session: str, versions: list[str],
                 at: dt.time, rng: random.Random) -> None:
    """Each version recorded a minute after the last; they arrive in any order."""
    start = dt.datetime.combine(day, at, tzinfo=LONDON)
    events = [mark("P1", code, day=day, session=session, urn=urn,
                   recorded=start + dt.timedelta(minutes=n)) for n, code in enumerate(versions)]
    rng.shuffle(events)
    stack.clock.set(start + dt.timedelta(minutes=len(versions)))
    await stack.publish(*events)
    await stack.processed()


async def _nothing_due(stack: Stack) -> None:
    """Wait until every notification due by now has settled, whichever dispatcher sends it."""
    due = select(func.count()).select_from(notifications).where(
        notifications.c.status.in_(("pending", "sending")),
        notifications.c.due_at <= stack.clock.now())
    async with asyncio.timeout(15):
        while True:
            async with stack.notifier.engine.connect() as conn:
                if not (await conn.execute(due)).scalar_one():
                    return
            await asyncio.sleep(0.01)


async def _settle(stack: Stack, receipted: set[str]) -> None:
    """Due actions run, the notifier sends, and every text sent is delivered (the handset's
    receipt): a family that got the text was reached."""
    await stack.run_due()
    await stack.handed_over()
    await stack.dispatch_due()
    await _nothing_due(stack)  # the background dispatcher may hold some of them
    for message in stack.twilio.messages:
        if message["sid"] not in receipted:
            receipted.add(message["sid"])
            assert (await stack.status_callback(message["sid"], "delivered")).status_code == 204


async def _outcomes(stack: Stack, urn: str) -> tuple[set[dt.date], set[dt.date]]:
    async with stack.notifier.engine.connect() as conn:
        sent = (await conn.execute(select(notifications.c.request_id).where(
            notifications.c.school_urn == urn, notifications.c.recipient_role == "parent",
            notifications.c.status.in_(("sent", "delivered"))))).scalars().all()
    async with stack.triage.engine.connect() as conn:
        raised = (await conn.execute(select(decisions.c.inputs).where(
            decisions.c.school_urn == urn,
            decisions.c.rule == "family_unreachable"))).scalars().all()
    contacted = {dt.date.fromisoformat(request_id.split(":")[3][:10]) for request_id in sent}
    return contacted, {dt.date.fromisoformat(inputs["date"]) for inputs in raised}


# Each example is a fortnight through both services (about a second): shrinking would take
# minutes, so a failure is reported as found, with its whole plan in the message.
@settings(max_examples=20, deadline=None, derandomize=True,
          phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(day_marks, min_size=len(FORTNIGHT), max_size=len(FORTNIGHT)),
       family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**16))
async def test_every_unexplained_first_day_reaches_a_person_and_no_other_day_does(
        stack: Stack, plan: list[Any], family: str, seed: int) -> None:
    urn = str(next(_urns))
    rng = random.Random(seed)
    receipted = {m["sid"] for m in stack.twilio.messages}
    document = school([pupil("P1", contacts=FAMILIES[family])], urn=urn,
                      policy={"max_action_age_days": 30}, closures=[])
    assert (await stack.put_school(document)).status_code == 200
    for day, (am, pm) in zip(FORTNIGHT, plan, strict=True):
        await _enter(stack, urn, day, "AM", am, dt.time(8, 50), rng)
        stack.at(9, 30, day=day)
        await _settle(stack, receipted)
        if pm:
            await _enter(stack, urn, day, "PM", pm, dt.time(13, 20), rng)
            stack.at(13, 40, day=day)
            await _settle(stack, receipted)
    contacted, raised = await _outcomes(stack, urn)
    for day, must_tell in _expected_first_days(plan).items():
        told = (day in contacted) + (day in raised)
        if must_tell:
            assert told == 1, f"{day} {family} {plan!r} {contacted} {raised}"
        else:
            assert day not in contacted, (day, family, plan, contacted)
