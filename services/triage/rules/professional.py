"""What a professional message carries besides the rule's own figures (docs/rules.md
"Professional messages", issue 16): what the school has already done, by when the reader is
asked to act, and whom at the school to call. Facts and dates only: never a code, a reason, an
office comment or health detail, and nothing a family message needs (they go in
`Outreach.staff_details`, which only the professionals' request carries).
"""

from __future__ import annotations

import datetime as dt

from triage.rules.rule import YearOutreach
from triage.schools import SchoolContext

Details = dict[str, str | int | float]

# School days the reader has to act, counted from the day the message is about (0: that day).
# docs/rules.md "Professional messages" gives the source of each.
ACT_WITHIN_SCHOOL_DAYS: dict[str, int] = {
    "social_worker_unexplained": 0,
    "looked_after_unexplained": 0,
    "day3_home_visit": 0,
    "family_unreachable": 0,
    "unexplained_not_recoded": 0,
    "severe_absence": 5,
    "continuous_absence_10_days": 5,
    "register_removal": 5,
    "la_referral": 10,
    "persistent_absence": 10,
    "attendance_stage1": 10,
    "ehcp_absence_15_days": 10,
    "penalty_notice_threshold": 10,
}


def act_by(rule: str, day: dt.date, school: SchoolContext) -> dt.date:
    """The school day `ACT_WITHIN_SCHOOL_DAYS[rule]` school days after `day`; past the end of
    the calendar the school knows, the same number of weekdays."""
    within = ACT_WITHIN_SCHOOL_DAYS[rule]
    if within == 0:
        return day
    found = school.calendar.nth_school_day(day + dt.timedelta(days=1), within)
    if found is not None:
        return found
    weekday = day
    for _ in range(within):
        weekday += dt.timedelta(days=1)
        while weekday.weekday() >= 5:
            weekday += dt.timedelta(days=1)
    return weekday


def school_contact(school: SchoolContext) -> Details:
    """Whom to call: the attendance officer, on the school's phone (the request carries it)."""
    officers = school.staff_recipients("attendance_officer")
    return {"school_contact": officers[0].name} if officers else {}


def year_details(outreach: YearOutreach) -> Details:
    """What the school has done this school year, for the reader taking the case on."""
    details: Details = {"year_family_contacts": outreach.family_contacts,
                        "year_replies": outreach.replies,
                        "year_home_visits": outreach.home_visits}
    if outreach.stage1_on is not None:
        details["stage1_sent_on"] = outreach.stage1_on.isoformat()
    return details


def staff_details(rule: str, day: dt.date, school: SchoolContext,
                  outreach: YearOutreach | None = None) -> Details:
    """Whom to call and by when, and with `outreach` what was done this year."""
    return {**(year_details(outreach) if outreach is not None else {}),
            **school_contact(school), "act_by": act_by(rule, day, school).isoformat()}
