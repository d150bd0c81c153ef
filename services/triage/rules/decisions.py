"""What a rule decides, and the deduplication keys of docs/rules.md "The rules" ("a rule fires
at most once per deduplication key"). Pure values: storage is `triage.decisions`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """Act at `due_at` (after re-checking the facts then)."""

    rule: str
    dedup_key: str
    due_at: dt.datetime
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    episode_start: dt.date | None = None


@dataclass(frozen=True)
class Suppress:
    """The rule matched but must not contact anybody; recorded with its reason."""

    rule: str
    dedup_key: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    episode_start: dt.date | None = None


@dataclass(frozen=True)
class Withdraw:
    """Whatever this rule scheduled under `dedup_key` no longer applies."""

    rule: str
    dedup_key: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


Decision = Schedule | Suppress | Withdraw


def key(rule: str, school_urn: str, pupil_id: str, *parts: object) -> str:
    """`rule:school:pupil:…`; the trailing parts are what docs/rules.md "The rules" names after
    "pupil +"."""
    tail = ":".join(p.isoformat() if isinstance(p, dt.date) else str(p) for p in parts)
    return f"{rule}:{school_urn}:{pupil_id}:{tail}"
