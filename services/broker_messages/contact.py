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


class ContactRequest(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["contact.request/v1"] = Field("contact.request/v1", alias="schema")
    # The rule's deduplication key: the same request delivered twice has the same id.
    request_id: str = Field(min_length=1, max_length=200)
    rule: str
    school: School
    date: dt.date
    pupils: tuple[PupilRef, ...]
    recipients: tuple[Recipient, ...]
    requested_at: AwareDatetime
