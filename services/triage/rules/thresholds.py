"""Rate thresholds with hysteresis (docs/rules.md "Crossings"), which `attendance_stage1`,
`persistent_absence`, `la_referral` and `severe_absence` each draw a line of.

A threshold rule fires once when the rate crosses its line, then stays disarmed until the rate
has recovered past the line by `hysteresis`: a pupil hovering at 90% is referred once, not
daily. The armed state and the number of crossings so far are stored per pupil, rule and
school year; the crossing number is the dedup key ("pupil + crossing").
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

from triage.policy import Policy
from triage.rates import Counts, rates_actionable
from triage.rules.decisions import Decision, Schedule, key
from triage.rules.professional import staff_details
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.school_document import Pupil
from triage.schools import SchoolContext

# Who hears of a crossing still standing when its message falls due (the rates are added).
Recipients = Callable[[DueAction, SchoolContext, Pupil], Outreach]


@functools.lru_cache(maxsize=256)
def _exact(value: float) -> Fraction:
    """A policy's line as the fraction it was written as (`0.1` -> 1/10)."""
    return Fraction(repr(value))


@dataclass(frozen=True)
class Threshold:
    rule: str
    # "attendance_below": fires when attendance_rate < line;
    # "absence_at": fires when absence_rate >= line.
    kind: Literal["attendance_below", "absence_at"]
    line: float

    def crossed(self, counts: Counts) -> bool:
        """Exact, as fractions (10% is 1/10, not 0.1000000000000000055), compared in whole
        numbers: the lists ask this of every pupil of an authority, and building two
        `Fraction`s per pupil took most of a 300-school list's time."""
        if counts.possible == 0:
            raise ZeroDivisionError("no possible sessions: no rate to compare")
        line = _exact(self.line)
        if self.kind == "attendance_below":
            present = counts.possible - counts.absent
            return present * line.denominator < line.numerator * counts.possible
        return counts.absent * line.denominator >= line.numerator * counts.possible

    def recovered(self, counts: Counts, hysteresis: float) -> bool:
        """Back past the line by at least `hysteresis` (percentage points as a fraction)."""
        margin = Fraction(repr(hysteresis))
        line = Fraction(repr(self.line))
        absence = Fraction(counts.absent, counts.possible)
        if self.kind == "attendance_below":
            return 1 - absence >= line + margin
        return absence <= line - margin

    def describe(self) -> str:
        if self.kind == "attendance_below":
            return f"attendance below {self.line:.0%}"
        return f"absence at or above {self.line:.0%}"


def crossing_key(rule: str, school_urn: str, pupil_id: str, year_start: dt.date,
                 crossing: int) -> str:
    return key(rule, school_urn, pupil_id, f"{year_start.year}", f"crossing-{crossing}")


def rate_inputs(counts: Counts) -> dict[str, float | int]:
    return {"possible": counts.possible, "absent": counts.absent,
            "unauthorised": counts.unauthorised,
            "attendance_rate": round(counts.attendance_rate, 4),
            "absence_rate": round(counts.absence_rate, 4)}


def crossing(threshold: Threshold, facts: RateFacts,
             state: RuleState) -> tuple[RuleState, Decision | None]:
    """The new state, and the decision to fire if the rate has just crossed the line."""
    counts, policy = facts.counts, facts.policy
    if not rates_actionable(counts, policy.min_possible_sessions):
        return state, None
    if not state.armed:
        if threshold.recovered(counts, policy.hysteresis):
            return RuleState(armed=True, crossings=state.crossings), None
        return state, None
    if not threshold.crossed(counts):
        return state, None
    number = state.crossings + 1
    decision = Schedule(
        threshold.rule,
        crossing_key(threshold.rule, facts.school_urn, facts.pupil.id, facts.year_start, number),
        facts.now,
        f"{threshold.describe()} (crossing {number} this school year)",
        {**rate_inputs(counts), "line": threshold.line, "crossing": number,
         "year_start": facts.year_start.isoformat()},
    )
    return RuleState(armed=False, crossings=number), decision


def still_crossed(threshold: Threshold, facts: DueFacts) -> Counts | Outreach:
    """Re-checked when the message is due: an amendment may have undone the crossing. Returns
    the counts the message reports, or the cancellation."""
    counts = facts.year_counts or Counts()
    if counts.possible == 0 or not threshold.crossed(counts):
        return Outreach(cancel=f"amended since: no longer {threshold.describe()}")
    return counts


def rate_details(counts: Counts) -> dict[str, str | int | float]:
    # A rate is not a code, reason or comment: parents are told it (the example school policy).
    return {"attendance_percent": round(counts.attendance_rate * 100, 1),
            "absence_percent": round(counts.absence_rate * 100, 1),
            "possible_sessions": counts.possible}


def crossing_rule(rule_id: str, threshold: Callable[[Policy], Threshold],
                  recipients: Recipients, *, family: bool = False) -> Rule:
    """A rate rule: decided when the counters move (`crossing`), re-checked when its message
    falls due (`still_crossed`); `recipients` says who hears, and every message reports the
    rates. `family`: parents hear too, and must be reachable."""

    def decide(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
        return crossing(threshold(facts.policy), facts, state)

    def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
             now: dt.datetime) -> Outreach:
        counts = still_crossed(threshold(school.policy), facts)
        if isinstance(counts, Outreach):
            return counts
        return replace(recipients(due, school, pupil), details=rate_details(counts),
                       staff_details=staff_details(rule_id, due.date, school,
                                                   facts.year_outreach))

    return Rule(id=rule_id, on_rates=decide, state_scope="year", plan=plan,
                needs=frozenset({Need.YEAR_COUNTS, Need.YEAR_OUTREACH}), family=family,
                must_reach_family=family)
