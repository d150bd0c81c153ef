"""Triage -> notifier: a decision that somebody must be contacted."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RecipientRole = Literal[
    "parent",
    "social_worker",
    "virtual_school",
    "attendance_officer",
    "dsl",
    "headteacher",
    "local_authority",
]
Channel = Literal["sms", "voice", "email"]


class Recipient(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: RecipientRole
    # A stable reference without personal data (e.g. "P0001/contact/1"): what logs may show.
    ref: str
    name: str
    phone: str | None = None
    email: str | None = None
    language: str = "en"
    channels: tuple[Channel, ...]


class PupilRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    pupil_id: str
    given_name: str
    family_name: str


class School(BaseModel):
    model_config = ConfigDict(frozen=True)

    urn: str
    name: str
    phone: str | None = None
    timezone: str = "Europe/London"


class DeliveryWindow(BaseModel):
    """When family SMS and voice may go out (rules.md §4 "Quiet hours"): never inside quiet
    hours, only on school days. Triage owns the calendar, so it sends the school days ahead."""

    model_config = ConfigDict(frozen=True)

    timezone: str = "Europe/London"
    quiet_hours: str = "20:00-08:00"
    school_days: tuple[dt.date, ...] = ()


class ContactRequest(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["contact.request/v1"] = Field("contact.request/v1", alias="schema")
    # The rule's deduplication key: the same request delivered twice has the same id.
    request_id: str = Field(min_length=1, max_length=200)
    rule: str
    school: School
    date: dt.date
    pupils: tuple[PupilRef, ...]
    # Everyone here is contacted, independently (professionals).
    recipients: tuple[Recipient, ...] = ()
    # Parents/carers in priority order: tried one after another until one is reached
    # (rules.md §4 "Contact order"); `no_contact` contacts are never included.
    family: tuple[Recipient, ...] = ()
    # Told once when nobody in `family` could be reached (the attendance officer).
    unreachable: tuple[Recipient, ...] = ()
    delivery: DeliveryWindow = DeliveryWindow()
    # Professional safeguarding alerts are not held by quiet hours.
    safeguarding: bool = False
    # The absence episode this request is about, so a reply can be attached to it.
    episode_start: dt.date | None = None
    # Extra template variables (e.g. an attendance rate); never codes, reasons or comments.
    details: dict[str, str | int | float] = Field(default_factory=dict)
    requested_at: AwareDatetime


class ReplyReceived(BaseModel):
    """Notifier -> triage: a parent replied about these pupils; stop chasing them."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["reply.received/v1"] = Field("reply.received/v1", alias="schema")
    reply_id: str = Field(min_length=1, max_length=100)
    school_urn: str
    pupil_ids: tuple[str, ...]
    contact_ref: str
    received_at: AwareDatetime
