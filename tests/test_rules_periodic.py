"""docs/rules.md "unexplained_not_recoded" and "attendance_update", the periodic rules, pure:
each row is a sentence of the policy."""

from __future__ import annotations

import datetime as dt

import pytest
from triage.policy import AttendanceUpdatePolicy, Policy
from triage.rates import Counts
from triage.rules import attendance_update, unexplained_not_recoded
from triage.rules.rule import DueFacts
from triage.school_document import Pupil

from tests.factories import LONDON
from tests.rule_facts import CALENDAR, FRIDAY, MONDAY, NEXT_MONDAY, at, due, parent, pupil, school

CHECKS = [
    pytest.param(at(NEXT_MONDAY, 9, 30), (dt.date(2026, 11, 19), MONDAY),
                 id="a Monday N is checked the next Monday at 09:30, and up to "
                    "max_action_age_days school days before that"),
    pytest.param(at(NEXT_MONDAY, 9, 29), None, id="checked once registers close"),
    pytest.param(at(dt.date(2026, 11, 28), 10), None, id="once a school day: not on Saturday"),
    pytest.param(at(dt.date(2026, 9, 3), 10), None,
                 id="the first day of term has no earlier school day to check"),
    pytest.param(at(dt.date(2026, 9, 4), 10), None,
                 id="within 5 school days: an N of the term's first day is not yet due on "
                    "its second"),
]


@pytest.mark.parametrize(("now", "dates"), CHECKS)
def test_which_days_are_checked(now: dt.datetime, dates: object) -> None:
    assert unexplained_not_recoded.days_to_check(now, CALENDAR, Policy(), LONDON) == dates


def test_one_alert_per_pupil_and_day_keyed_by_its_first_session_still_n() -> None:
    """Dedup key: pupil + date + session."""
    decision = unexplained_not_recoded.decide("123456", "P1", MONDAY, "PM", Policy(),
                                              at(NEXT_MONDAY, 9, 30))
    assert decision.dedup_key == "unexplained_not_recoded:123456:P1:2026-11-23:PM"
    assert decision.due_at == at(NEXT_MONDAY, 9, 30)


NOT_RECODED = [
    pytest.param({"AM": "N", "PM": "N"}, "AM and PM",
                 id="Recipients: the attendance officer (email, naming the sessions still N) "
                    "and a task on the officer's list"),
    pytest.param({"AM": "C", "PM": "N"}, "PM", id="only the sessions still N are named"),
    pytest.param({"AM": "C", "PM": "I"}, None,
                 id="a register corrected in the meantime alerts nobody"),
]


@pytest.mark.parametrize(("codes", "named"), NOT_RECODED)
def test_not_recoded_when_settled(codes: dict[str, str], named: str | None) -> None:
    outreach = unexplained_not_recoded.plan(due("unexplained_not_recoded", MONDAY),
                                            DueFacts(codes=codes), school(), pupil(),
                                            at(NEXT_MONDAY, 9, 30))
    if named is None:
        assert outreach.cancel is not None and not outreach.tasks
        return
    assert outreach.details["sessions"] == named
    assert [r.role for r in outreach.professionals] == ["attendance_officer"]
    [task] = outreach.tasks
    assert task.kind == "unexplained_not_recoded" and named in task.detail


PERIODS = [
    pytest.param(at(FRIDAY, 16), ("2026-W48", FRIDAY, at(FRIDAY, 16)),
                 id="each week with at least one school day, on attendance_update.weekday "
                    "(default Friday) at attendance_update.time (default 16:00)"),
    pytest.param(at(FRIDAY, 15, 59), None, id="not before 16:00"),
    pytest.param(at(dt.date(2026, 12, 25), 17), None, id="a week without school: no update"),
]


@pytest.mark.parametrize(("now", "expected"), PERIODS)
def test_weekly_period(now: dt.datetime, expected: object) -> None:
    assert attendance_update.period_due(now, CALENDAR, Policy(), LONDON) == expected


OPTED_IN = parent(1, attendance_updates=True)
NOT_OPTED = parent(2)
EVERYONE = Policy(attendance_update=AttendanceUpdatePolicy(opt_in=False))

WANTS = [
    pytest.param(pupil([NOT_OPTED, OPTED_IN]), Policy(), True,
                 id="only contacts who asked for updates (attendance_updates: true) get one"),
    pytest.param(pupil([NOT_OPTED]), Policy(), False, id="nobody opted in: no update"),
    pytest.param(pupil([NOT_OPTED]), EVERYONE, True, id="while attendance_update.opt_in is true"),
    pytest.param(pupil([parent(1, attendance_updates=True, no_contact=True)]), Policy(), False,
                 id="a no_contact contact is never contacted"),
]


@pytest.mark.parametrize(("who", "policy", "wanted"), WANTS)
def test_who_wants_the_weekly_update(who: Pupil, policy: Policy, wanted: bool) -> None:
    assert attendance_update.wants_update(who, policy) is wanted


UPDATE_PLAN = [
    pytest.param(Counts(possible=20, authorised=1), ["P1/contact/1"],
                 id="Parents (SMS) with the attendance rate this term"),
    pytest.param(None, "not in term time", id="only in term"),
    pytest.param(Counts(), "no sessions", id="nothing to report before the term's first mark"),
]


@pytest.mark.parametrize(("counts", "expected"), UPDATE_PLAN)
def test_weekly_update_when_due(counts: Counts | None, expected: object) -> None:
    outreach = attendance_update.plan(due("attendance_update", FRIDAY),
                                      DueFacts(term_counts=counts), school(),
                                      pupil([OPTED_IN, NOT_OPTED]), at(FRIDAY, 16))
    if isinstance(expected, str):
        assert outreach.cancel is not None and expected in outreach.cancel
        return
    assert [r.ref for r in outreach.family] == expected
    assert [r.channels for r in outreach.family] == [("sms",)]
    assert outreach.details["attendance_percent"] == 95.0
