"""docs/rules.md "The rules" `social_worker_unexplained`, `looked_after_unexplained`, `register_removal`,
`ehcp_absence_15_days`, through the real broker."""

from __future__ import annotations

import datetime as dt

from tests.factories import LONDON, MONDAY, mark, pupil, removal, school
from tests.scenarios import emails_about, register, timeline
from tests.stack import Stack

WORKER = {"name": "A Worker", "email": "a.worker@la.example", "phone": "+447700900200"}


def with_la(document: dict[str, object]) -> dict[str, object]:
    document["local_authority"] = {
        "name": "Oxfordshire", "attendance_team_email": "attendance@la.example",
        "send_team_email": "send@la.example", "virtual_school_email": "virtualschool@la.example"}
    return document


async def test_looked_after_childs_unexplained_absence_reaches_social_worker_and_virtual_school(
    stack: Stack,
) -> None:
    await stack.put_school(with_la(school([
        pupil("P1", "Sally", social_worker=WORKER, looked_after=True)])))
    await register(stack, "P1", MONDAY)
    worker = await emails_about(stack, "unexplained absence", 2)
    assert sorted(e["To"] for e in worker) == ["a.worker@la.example", "virtualschool@la.example"]
    assert all("Sally Smith" in e.get_body(("plain",)).get_content() for e in worker)


async def test_social_worker_is_not_told_when_the_office_explains_it_before_0930(
    stack: Stack,
) -> None:
    await stack.put_school(with_la(school([pupil("P1", social_worker=WORKER)])))
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"))
    stack.at(9, 5)
    await stack.publish(mark("P1", "M", recorded=stack.clock.now()))
    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    assert await stack.notifications(rule="social_worker_unexplained") == []
    decisions = [d for d in (await timeline(stack, "P1"))["decisions"]
                 if d["rule"] == "social_worker_unexplained"]
    assert [d["outcome"] for d in decisions] == ["scheduled", "cancelled"]


async def test_social_worker_hears_once_a_day_however_many_n_sessions(stack: Stack) -> None:
    await stack.put_school(with_la(school([pupil("P1", social_worker=WORKER)])))
    await register(stack, "P1", MONDAY, sessions=("AM", "PM"))
    await emails_about(stack, "unexplained absence", 1)
    stack.at(14, 0)
    await stack.run_due()
    assert len(await stack.notifications(rule="social_worker_unexplained")) == 1


async def test_removal_from_the_register_is_reported_to_social_worker_and_la(stack: Stack) -> None:
    await stack.put_school(with_la(school([pupil("P1", social_worker=WORKER)])))
    stack.at(10, 0)
    await stack.publish(removal("P1"), removal("P1"))
    await stack.processed()
    await stack.run_due()
    emails = await emails_about(stack, "removal from the register", 2)
    assert sorted(e["To"] for e in emails) == ["a.worker@la.example", "attendance@la.example"]


async def test_pupil_with_an_ehcp_out_for_more_than_15_days_is_reported_to_send_team(
    stack: Stack,
) -> None:
    await stack.put_school(with_la(school([pupil("P1", ehcp=True, contacts=[])],
                                          policy={"max_action_age_days": 30})))
    days = [dt.date(2026, 11, 2) + dt.timedelta(days=i) for i in range(30)]
    days = [d for d in days if d.weekday() < 5 and d != dt.date(2026, 11, 20)][:16]
    stack.at(17, 0, day=days[-1])
    # 15 days are not "more than 15"; the 16th is.
    await stack.publish(*(mark("P1", "I", day=d, session=s) for d in days[:15]
                          for s in ("AM", "PM")))
    await stack.processed()
    await stack.run_due()
    assert await stack.notifications(rule="ehcp_absence_15_days") == []
    await stack.publish(*(mark("P1", "I", day=days[15], session=s,
                                recorded=dt.datetime.combine(days[15], dt.time(9), LONDON))
                          for s in ("AM", "PM")))
    await stack.processed()
    await stack.run_due()
    [email] = await emails_about(stack, "EHCP", 1)
    assert email["To"] == "send@la.example"
