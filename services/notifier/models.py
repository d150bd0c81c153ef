from __future__ import annotations

from servicekit.database import UtcDateTime
from servicekit.keys import api_keys_table
from servicekit.outbox import outbox_table
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

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
    # Set when a claim expired (its process died mid-send): the provider is asked whether the
    # message went before it is sent again.
    Column("uncertain", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # recipient (independent professional) | family (a step of the fallback chain) |
    # unreachable (the alert that the family could not be reached).
    Column("kind", String(12), nullable=False, server_default="recipient"),
    # For family rows: the contact's position in the request's `family` (priority order).
    Column("family_index", Integer, nullable=True),
    Column("language", String(8), nullable=False, server_default="en"),
    # When the provider accepted it: the delivery-receipt wait runs from here.
    Column("sent_at", UtcDateTime, nullable=True),
    # Set by a cancellation (ContactCancelled) while the row is claimed: the dispatcher's guard
    # then refuses to start a send (notifier.cancellation).
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # When the last provider call for this row was allowed to start (the guard's mark).
    Column("send_started_at", UtcDateTime, nullable=True),
    # For staff: why a row was cancelled, or that a cancellation came while it was being sent.
    Column("note", Text, nullable=True),
    # Email: the display name of `From` (the school's name), so a parent sees who wrote.
    Column("sender_name", String(200), nullable=True),
    # The same request delivered twice creates nothing new: exactly-once effect.
    UniqueConstraint("request_id", "recipient_ref", "channel", name="uq_notification_request"),
    Index("ix_notifications_dispatch", "status", "due_at"),
    Index("ix_notifications_school", "school_urn", "created_at"),
    Index("ix_notifications_provider", "provider_id"),
    # An inbound SMS is attributed to the schools that texted its number.
    Index("ix_notifications_to", "to"),
)

# Twilio status callbacks that came before their provider id was recorded (the provider can
# answer the webhook faster than the sender commits its answer): applied when the id is
# recorded (notifier.notification_store), purged by the housekeeping (notifier.housekeeping) if it
# never is.
early_status_callbacks = Table(
    "early_status_callbacks",
    metadata,
    Column("provider_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("provider_id", "status", name="pk_early_status_callbacks"),
    Index("ix_early_status_callbacks_received", "received_at"),
)

# Every contact request as received: the fallback chain's state, and what replies match against.
contact_requests = Table(
    "contact_requests",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("school_urn", String(8), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    # chasing | reached | replied | unreachable | none (no family to chase) | cancelled.
    # A cancellation that arrives before its request leaves a `cancelled` row with an empty
    # rule and payload (a tombstone), filled in when the request comes.
    Column("state", String(16), nullable=False),
    # The family contact now being tried (index into the request's `family`).
    Column("position", Integer, nullable=False, default=0),
    # When the chain must be looked at again (a delivery-receipt wait expiring).
    Column("check_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Why triage cancelled the request (state `cancelled`).
    Column("cancel_reason", Text, nullable=True),
    # The pupils cancelled so far: a sibling's re-code takes only that child out of a shared
    # message (a tombstone keeps them for the request still to come).
    Column("cancelled_pupils", JSON, nullable=True),
    Index("ix_contact_requests_check", "state", "check_at"),
)

# Family contacts' phone numbers per request, so an inbound SMS finds its contact and children.
family_contacts = Table(
    "family_contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(200), nullable=False),
    Column("school_urn", String(8), nullable=False),
    Column("contact_ref", String(100), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("pupil_ids", JSON, nullable=False),
    Column("episode_start", Date, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("request_id", "contact_ref", name="uq_family_contact"),
    Index("ix_family_contacts_phone", "phone", "created_at"),
)

# docs/rules.md "Opt-out": numbers that replied STOP (or Twilio answered 21610), per school.
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("school_urn", String(8), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("school_urn", "phone", name="pk_opt_outs"),
)

# Inbound SMS, matched to a school's contact (one row per school) or flagged as unmatched, and
# email replies (notifier.email_replies: `from_phone` is then the sender's address).
replies = Table(
    "replies",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("message_sid", String(64), nullable=False),
    Column("school_urn", String(8), nullable=True),
    Column("from_phone", String(254), nullable=False),
    Column("body", Text, nullable=False),
    # reply | opt_out | opt_in
    Column("kind", String(12), nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("contact_ref", String(100), nullable=True),
    Column("pupil_ids", JSON, nullable=False),
    Column("episodes", JSON, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_replies_school", "school_urn", "received_at"),
)

# Every inbound SMS's MessageSid, once: a replayed webhook is recognised whatever it would match
# now (a school may have texted the number since).
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("message_sid", String(64), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False),
)

# The notifier's transactional outbox (ReplyReceived and FamilyUnreachable to triage); triage
# has its own `outbox`.
outbox = outbox_table(metadata, name="notifier_outbox")

# Callers' API keys, hashed (servicekit.keys); triage has its own `api_keys`.
api_keys = api_keys_table(metadata, name="notifier_api_keys")


# One row per channel: the next free send slot every replica shares (notifier.rate_limit),
# in seconds since the epoch (PostgreSQL's clock) or on the one machine's monotonic clock
# (SQLite).
rate_slots = Table(
    "rate_slots",
    metadata,
    Column("channel", String(8), primary_key=True),
    Column("next_at", Float(precision=53), nullable=False),
)
