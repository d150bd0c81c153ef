"""The attendance rules (docs/rules.md "The rules") as pure functions of (state, event, policy, now).

No I/O here: each function takes what the rule needs to know and returns decisions, so it can
be read line by line against the policy and tested without a broker or a database. Storage is
`triage.ingest`, `triage.evaluation`, `triage.decisions` and `triage.scheduler`.
"""

from triage.rules.decisions import (
    ALL_RULES,
    FAMILY_RULES,
    FIRST_DAY_CONTACT,
    Decision,
    Schedule,
    Suppress,
    Withdraw,
    first_day_contact_key,
)
from triage.rules.first_day import (
    first_day_contact,
    first_day_contact_still_due,
    is_stale,
    is_unexplained,
)
from triage.rules.recipients import family_recipients

__all__ = [
    "ALL_RULES", "FAMILY_RULES", "FIRST_DAY_CONTACT", "Decision", "Schedule", "Suppress",
    "Withdraw", "family_recipients", "first_day_contact", "first_day_contact_key",
    "first_day_contact_still_due", "is_stale", "is_unexplained",
]
