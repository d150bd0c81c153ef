"""docs/rules.md "parked_marks_expiring": marks for a pupil the roster does not name are parked,
and discarded `parked_event_days` after they were parked (docs/security.md "Retention"). Before
that, the school's attendance officer is told, once a school day while any are within
`parked_event_warn_days` of being discarded, so a roster left without a pupil never silently
loses that pupil's register.

School-level, not a pupil's: the pupils are not on the roster, so only their ids are known.
Planned and requested by `triage.periodic` on the scheduler's clock; nothing to re-check later,
since the alert goes at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from triage.rules.rule import Rule

ID = "parked_marks_expiring"


def dedup_key(school_urn: str, day: dt.date) -> str:
    # docs/rules.md "parked_marks_expiring": dedup key "school + date".
    return f"{ID}:{school_urn}:{day.isoformat()}"


def warn_if_parked_before(now: dt.datetime, parked_days: int, warn_days: int) -> dt.datetime:
    """Marks parked before this are within `warn_days` of being discarded."""
    return now - dt.timedelta(days=max(parked_days - warn_days, 0))


def discard_on(parked_at: dt.datetime, parked_days: int, tz: dt.tzinfo) -> dt.date:
    """The school-local day a mark parked at `parked_at` is discarded (triage.housekeeping)."""
    return (parked_at + dt.timedelta(days=parked_days)).astimezone(tz).date()


def details(parked: Sequence[tuple[str, dt.datetime]], parked_days: int,
            tz: dt.tzinfo) -> dict[str, str | int | float]:
    """`parked`: (pupil id, parked at) of each mark about to go, oldest first."""
    pupil_ids = sorted({pupil_id for pupil_id, _ in parked})
    first_discard = discard_on(min(at for _, at in parked), parked_days, tz)
    return {"count": len(parked), "pupils": len(pupil_ids), "pupil_ids": ", ".join(pupil_ids),
            "discard_on": first_discard.isoformat()}


RULE = Rule(id=ID, plan=None)
