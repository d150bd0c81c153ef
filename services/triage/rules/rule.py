"""What a rule is (docs/architecture.md "Adding a rule"): one `Rule` per module under
`triage.rules`, listed once in `triage.rules.RULES`.

A rule has up to four parts, all pure:

- a **decision** on one of the moments triage looks at a pupil (`on_day`: a marked day;
  `on_episode`: an absence episode; `on_rates`: the counters moved; `on_removal`: the pupil left
  the register). Periodic rules are decided by `triage.periodic` on their own clock;
- a **planner** (`plan`), run when a scheduled action falls due: it re-checks the facts the
  action rests on and says who hears, on which channels, and which staff tasks open. It reads
  nothing itself: `needs` names the facts the caller loads into `DueFacts`;
- who **stops** it: a parent's reply (`stopped_by_reply`), an amendment after the request was
  handed to the notifier (`recalled_after_request`);
- how it treats **families**: whether parents get its messages (`family`), whether it must
  reach somebody (`must_reach_family`, else `family_unreachable` is raised), and whether it is
  information every contact hears (`every_contact`) rather than a chase down the contacts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from broker_messages.contact import Recipient

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rates import Counts
from triage.rules.decisions import Decision
from triage.rules.episodes import Episode, MarksByDay
from triage.school_document import Pupil
from triage.schools import SchoolContext


@dataclass(frozen=True)
class DayFacts:
    """One marked school day of one pupil, as the evaluator saw it."""

    school_urn: str
    pupil: Pupil
    day: dt.date
    codes: Mapping[str, str]  # session -> code
    previous_day_absent: bool  # the episode began on an earlier school day
    calendar: SchoolCalendar
    policy: Policy
    now: dt.datetime
    tz: ZoneInfo


@dataclass(frozen=True)
class EpisodeFacts:
    """One absence episode of one pupil (docs/rules.md "Episodes") and the marks around it."""

    school_urn: str
    pupil: Pupil
    episode: Episode
    marks: MarksByDay
    calendar: SchoolCalendar
    policy: Policy
    now: dt.datetime
    tz: ZoneInfo


@dataclass(frozen=True)
class RateFacts:
    """One pupil's counters for the school year, after a batch moved them."""

    school_urn: str
    pupil: Pupil
    counts: Counts
    year_start: dt.date
    # The date of each unauthorised session (one entry per session) in the penalty window.
    unauthorised_sessions: Sequence[dt.date]
    calendar: SchoolCalendar
    policy: Policy
    now: dt.datetime
    tz: ZoneInfo


@dataclass(frozen=True)
class RemovalFacts:
    school_urn: str
    pupil_id: str
    removed_on: dt.date
    ground: str | None
    now: dt.datetime


@dataclass(frozen=True)
class RuleState:
    """What a rule remembers per pupil (`rule_states`): whether a threshold is armed, how many
    times it crossed (the dedup key), the last penalty window alerted on."""

    armed: bool = True
    crossings: int = 0
    covered_until: dt.date | None = None


class Need(StrEnum):
    """Facts a planner needs loaded before it runs (see `triage.outreach`)."""

    DAY_CODES = "day_codes"  # the codes of the action's date
    EPISODE = "episode"  # the marks from before the action's episode to its date
    REPLY = "reply"  # whether a parent replied since the episode began
    YEAR_COUNTS = "year_counts"  # the counters for the school year of the action's date
    TERM_COUNTS = "term_counts"  # the counters from the start of the term to the action's date
    # What triage has already set going for the action's episode (with EPISODE): family
    # contacts requested, a home visit planned.
    EPISODE_OUTREACH = "episode_outreach"
    # What the school has done for the pupil this school year (`YearOutreach`), for the
    # professionals who take a case on (docs/rules.md "Professional messages").
    YEAR_OUTREACH = "year_outreach"


@dataclass(frozen=True)
class DueAction:
    """A scheduled action that has fallen due."""

    rule: str
    dedup_key: str
    school_urn: str
    pupil_id: str
    date: dt.date
    episode_start: dt.date | None


@dataclass(frozen=True)
class YearOutreach:
    """What triage has handed to the notifier for a pupil since the school year began."""

    family_contacts: int = 0  # family messages (first-day contacts, letters, updates)
    home_visits: int = 0  # day-3 home visits requested
    stage1_on: dt.date | None = None  # the stage-1 message's day, if one went this year
    replies: int = 0  # parents' replies about the pupil received this school year


@dataclass(frozen=True)
class DueFacts:
    """What the caller read for a planner, as its rule's `needs` asked."""

    codes: Mapping[str, str] = field(default_factory=dict)
    marks: MarksByDay = field(default_factory=dict)
    episode: Episode | None = None
    replied: bool = False
    year_counts: Counts | None = None
    term_counts: Counts | None = None  # None when the action's date is not in term
    # EPISODE_OUTREACH: family contact actions of the episode requested or due by now, and
    # whether a home visit is scheduled or open for it.
    family_contacts_requested: int = 0
    home_visit_planned: bool = False
    year_outreach: YearOutreach = field(default_factory=YearOutreach)


@dataclass(frozen=True)
class TaskToOpen:
    """A staff task the caller opens (`triage.tasks`), at most once per kind, pupil and day."""

    kind: str
    day: dt.date
    detail: str


@dataclass
class Outreach:
    """What one due action asks for; `cancel` says why it must not go at all."""

    cancel: str | None = None
    family: list[Recipient] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    professionals: list[Recipient] = field(default_factory=list)
    details: dict[str, str | int | float] = field(default_factory=dict)
    # Added to `details` in the professionals' request only: what the school has done and whom
    # to call are not for the family's message, and siblings share one only when their
    # details are equal.
    staff_details: dict[str, str | int | float] = field(default_factory=dict)
    episode_start: dt.date | None = None
    tasks: list[TaskToOpen] = field(default_factory=list)


Planner = Callable[[DueAction, DueFacts, SchoolContext, Pupil, dt.datetime], Outreach]


@dataclass(frozen=True)
class Rule:
    id: str
    # The send-time re-check and the recipients; None for a rule that is never scheduled as an
    # action of its own (`family_unreachable` is raised when another rule's family is out of reach).
    plan: Planner | None
    needs: frozenset[Need] = frozenset()
    on_day: Callable[[DayFacts], Decision | None] | None = None
    on_episode: Callable[[EpisodeFacts], Decision | None] | None = None
    # With the rule's stored state; returns the new state and any decision.
    on_rates: Callable[[RateFacts, RuleState], tuple[RuleState, Decision | None]] | None = None
    # "year": state per school year (crossings); "all": one state for all time (windows).
    state_scope: Literal["year", "all"] | None = None
    on_removal: Callable[[RemovalFacts], Decision] | None = None
    family: bool = False
    must_reach_family: bool = False
    # Information, not chasing (docs/rules.md "Contact order"): every family recipient hears,
    # each on their own, instead of the first reached of a fallback chain.
    every_contact: bool = False
    stopped_by_reply: bool = False
    recalled_after_request: bool = False
    acts_off_roll: bool = False  # planned even when the pupil is no longer on roll
