"""Triage's tables. Rows are plain records; the rules live in `triage.rules`."""

from __future__ import annotations

from servicekit.database import UtcDateTime
from servicekit.keys import api_keys_table
from servicekit.outbox import outbox_table
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

schools = Table(
    "schools",
    metadata,
    Column("urn", String(8), primary_key=True),
    # The whole uploaded document (calendar, staff, local authority, policy overrides).
    Column("document", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

pupils = Table(
    "pupils",
    metadata,
    Column("school_urn", String(8), primary_key=True),
    Column("pupil_id", String(64), primary_key=True),
    Column("record", JSON, nullable=False),  # names, contacts, social worker, flags
    Column("on_roll", Boolean, nullable=False, default=True),
    Column("removed_on", Date, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Every event ever accepted, once: the deduplication key and the audit trail.
received_events = Table(
    "received_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_received_events_pupil", "school_urn", "pupil_id"),
    # The retention purge finds expired rows by age (triage.housekeeping), never by a scan of
    # a year's log.
    Index("ix_received_events_received", "received_at"),
)

# The current mark per pupil, date and session (the latest `recorded_at` wins).
marks = Table(
    "marks",
    metadata,
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("date", Date, nullable=False),
    Column("session", String(2), nullable=False),
    Column("code", String(3), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("event_id", String(64), nullable=False),
    # The rules read each pupil's recent codes (triage.history); with the code in the key's
    # index PostgreSQL reads them from the index alone, not a heap page per mark (a pupil's
    # marks are written a day apart, so each lies on a page of its own).
    PrimaryKeyConstraint("school_urn", "pupil_id", "date", "session",
                         postgresql_include=["code"]),
    # The `N` marks still standing (few: an `N` is to be corrected within days), found by the
    # staff lists without reading every mark of the school year; a query must name 'N' as a
    # literal for either database to use it.
    Index("ix_marks_unexplained", "school_urn", "date", sqlite_where=text("code = 'N'"),
          postgresql_where=text("code = 'N'")),
)

# Events for pupils the roster does not name yet (docs/contract.md §2).
parked_events = Table(
    "parked_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("parked_at", UtcDateTime, nullable=False),
    Index("ix_parked_events_pupil", "school_urn", "pupil_id"),
)

# Decisions waiting for their time (stored, so they survive a restart).
scheduled_actions = Table(
    "scheduled_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(200), nullable=False, unique=True),
    Column("rule", String(64), nullable=False),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("date", Date, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    # triage.decisions.ActionStatus; written only by triage/decisions.py
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The absence episode the action is about (day-3 visits, replies, 10-day returns).
    Column("episode_start", Date, nullable=True),
    # The contact request the action was handed over in (an amendment cancels it there too).
    Column("request_id", String(200), nullable=True),
    # Times the action was re-armed after its request was cancelled: each asks anew.
    Column("generation", Integer, nullable=False, server_default="0"),
    Index("ix_scheduled_actions_due", "status", "due_at"),
    Index("ix_scheduled_actions_request", "request_id"),
    Index("ix_scheduled_actions_pupil", "school_urn", "pupil_id"),
)

# Why every rule evaluation fired, was suppressed or was cancelled.
decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("dedup_key", String(200), nullable=False),
    Column("outcome", String(16), nullable=False),  # triage.decisions.Outcome
    Column("reason", Text, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Index("ix_decisions_pupil", "school_urn", "pupil_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # home_visit | family_unreachable | unexplained_not_recoded | dsl_escalation
    Column("kind", String(32), nullable=False),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    # The day the task is about: an episode's first day, or the unexplained mark's date.
    Column("episode_start", Date, nullable=False),
    Column("status", String(16), nullable=False),  # open | done | cancelled
    Column("outcome", Text, nullable=True),
    # What the officer must do, in words (no codes' reasons, no comments).
    Column("detail", Text, nullable=True),
    Column("due_at", UtcDateTime, nullable=True),
    # The staff member who has taken the task (a staff reference), if anyone has.
    Column("assignee", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "school_urn", "pupil_id", "episode_start"),
)

# docs/rules.md "Rates": sessions per pupil per school year, updated by the difference each mark makes.
attendance_counters = Table(
    "attendance_counters",
    metadata,
    Column("school_urn", String(8), primary_key=True),
    Column("pupil_id", String(64), primary_key=True),
    Column("year_start", Date, primary_key=True),
    Column("possible", Integer, nullable=False),
    Column("authorised", Integer, nullable=False),
    Column("unauthorised", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Per pupil and rule: whether a threshold rule is armed (docs/rules.md "Crossings"), how many
# times it has fired (the dedup key), and for penalty notices the last window alerted on.
rule_states = Table(
    "rule_states",
    metadata,
    Column("school_urn", String(8), primary_key=True),
    Column("pupil_id", String(64), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("scope", String(16), primary_key=True),  # the school year, or "" for all time
    Column("armed", Boolean, nullable=False),
    Column("crossings", Integer, nullable=False),
    Column("covered_until", Date, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A parent's reply (docs/rules.md "Replies"), one row per pupil it is about.
replies = Table(
    "parent_replies",
    metadata,
    Column("reply_id", String(100), primary_key=True),
    Column("pupil_id", String(64), primary_key=True),
    Column("school_urn", String(8), nullable=False),
    Column("contact_ref", String(100), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_parent_replies_pupil", "school_urn", "pupil_id"),
)

# A text from a number on the roster that answered nothing of ours (docs/rules.md "Parents
# who tell the school first"), per school: `matched` when the number is one family's at this
# school alone (it counts as hearing from them), else it only "may concern" them.
explanations = Table(
    "explanations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("school_urn", String(8), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("date", Date, nullable=False),  # the school-local day it arrived
    Column("body", Text, nullable=False),
    Column("contact_refs", JSON, nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # pending | accepted | dismissed
    # The actions hearing from the family cancelled: a dismissal brings them back.
    Column("cancelled", JSON, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("code", String(3), nullable=True),
    UniqueConstraint("message_id", "school_urn", name="uq_explanations_message"),
    Index("ix_explanations_status", "school_urn", "status"),
)

# The pupils an explanation is (or may be) about.
explanation_pupils = Table(
    "explanation_pupils",
    metadata,
    Column("explanation_id", Integer, primary_key=True),
    Column("pupil_id", String(64), primary_key=True),
    Column("school_urn", String(8), nullable=False),
    Index("ix_explanation_pupils_pupil", "school_urn", "pupil_id"),
)

# Periodic rules already planned for a period (e.g. the weekly attendance update).
periodic_runs = Table(
    "periodic_runs",
    metadata,
    Column("school_urn", String(8), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

outbox = outbox_table(metadata)

# Callers' API keys, hashed (servicekit.keys); the notifier keeps its own.
api_keys = api_keys_table(metadata)
