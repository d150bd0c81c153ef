"""The attendance rules (docs/rules.md "The rules"): one module per rule, listed once in `RULES`.

Each module holds everything that makes its rule (see `triage.rules.rule.Rule`): the decision,
the send-time re-check and recipients, and what stops it. No I/O here: the evaluator
(`triage.evaluation`), the scheduler (`triage.scheduler`, `triage.outreach`,
`triage.periodic`) and the reply handling (`triage.replies`) read and write, and loop over
`RULES`. Adding a rule is a module, its templates, its tests and an entry below.
"""

from triage.rules import (
    attendance_stage1,
    attendance_update,
    continuous_absence_10_days,
    day3_home_visit,
    ehcp_absence_15_days,
    family_opted_out,
    family_unreachable,
    first_day_contact,
    la_referral,
    looked_after_unexplained,
    parked_marks_expiring,
    penalty_notice_threshold,
    persistent_absence,
    register_removal,
    severe_absence,
    social_worker_unexplained,
    unexplained_not_recoded,
)
from triage.rules.decisions import Decision, Schedule, Suppress, Withdraw
from triage.rules.rule import Rule

# In the order of docs/rules.md "The rules"; the evaluator runs them in this order.
RULES: tuple[Rule, ...] = (
    first_day_contact.RULE,
    day3_home_visit.RULE,
    social_worker_unexplained.RULE,
    looked_after_unexplained.RULE,
    register_removal.RULE,
    attendance_stage1.RULE,
    persistent_absence.RULE,
    la_referral.RULE,
    severe_absence.RULE,
    penalty_notice_threshold.RULE,
    continuous_absence_10_days.RULE,
    ehcp_absence_15_days.RULE,
    unexplained_not_recoded.RULE,
    family_unreachable.RULE,
    family_opted_out.RULE,
    parked_marks_expiring.RULE,
    attendance_update.RULE,
)

_BY_ID = {rule.id: rule for rule in RULES}


def rule_named(rule_id: str) -> Rule | None:
    return _BY_ID.get(rule_id)


ALL_RULES = tuple(rule.id for rule in RULES)
# Rules whose messages go to parents (docs/rules.md data minimisation, siblings, quiet hours).
FAMILY_RULES = tuple(rule.id for rule in RULES if rule.family)

__all__ = ["ALL_RULES", "FAMILY_RULES", "RULES", "Decision", "Rule", "Schedule", "Suppress",
           "Withdraw", "rule_named"]
