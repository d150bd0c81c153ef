"""The staff app's own tables: people, their sessions, private notes, and who looked at which
child. Pupils' data is not here: it stays in triage and the notifier."""

from __future__ import annotations

from servicekit.database import UtcDateTime
from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

users = Table(
    "staff_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Kept lower-case: one person, one account, however they type it.
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),  # staff.access.Role
    # School URNs this person works for; null for every school (administrators).
    Column("schools", JSON, nullable=True),
    Column("password_hash", String(200), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),
)

sessions = Table(
    "staff_sessions",
    metadata,
    # SHA-256 of the cookie's value: a copy of the database signs nobody in.
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

notes = Table(
    "staff_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("author_id", Integer, nullable=False),
    Column("author_name", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_staff_notes_pupil", "school_urn", "pupil_id"),
)

# Every view of a child's record and every change made through the app (docs/staff.md
# "Who looked"): the school's safeguarding lead reads it on the Audit page.
audit_log = Table(
    "staff_audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("user_id", Integer, nullable=False),
    Column("user_name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(32), nullable=False),  # viewed, recoded, spoke_to_parent, ...
    Column("school_urn", String(8), nullable=False),
    Column("pupil_id", String(64), nullable=False),
    Column("detail", String(500), nullable=True),
    Index("ix_staff_audit_log_school", "school_urn", "at"),
)
