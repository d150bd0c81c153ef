from __future__ import annotations

from servicekit.database import UtcDateTime
from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

# One row per recipient and channel of a contact request: what was decided, sent and delivered.
notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("school_urn", String(8), nullable=False),
    Column("pupil_ids", JSON, nullable=False),
    Column("recipient_role", String(32), nullable=False),
    Column("recipient_ref", String(100), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("to", String(254), nullable=False),
    Column("subject", Text, nullable=True),
    Column("body", Text, nullable=False),
    Column("html", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("provider_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The same request delivered twice creates nothing new: exactly-once effect.
    UniqueConstraint("request_id", "recipient_ref", "channel", name="uq_notification_request"),
    Index("ix_notifications_dispatch", "status", "due_at"),
    Index("ix_notifications_school", "school_urn", "created_at"),
    Index("ix_notifications_provider", "provider_id"),
)
