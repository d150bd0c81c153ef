"""Triage -> notifier: a decision that somebody must be contacted."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Literal

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
    """When family SMS and voice may go out (docs/rules.md "Quiet hours"): never inside quiet
    hours, only on school days. Triage owns the calendar, so it sends the school days ahead."""

    model_config = ConfigDict(frozen=True)

    timezone: str = "Europe/London"
    quiet_hours: str = "20:00-08:00"
    school_days: tuple[dt.date, ...] = ()


class FollowOn(BaseModel):
    """One child's own chain, tried when a carer shared with siblings (`family`) was not
    reached: it names only that child (docs/rules.md "Siblings")."""

    model_config = ConfigDict(frozen=True)

    pupil_id: str
    family: tuple[Recipient, ...] = ()


def follow_on_id(request_id: str, pupil_id: str) -> str:
    """The request id of one child's follow-on chain: deterministic, within 200 characters."""
    joined = f"{request_id}/{pupil_id}"
    if len(joined) <= 200:
        return joined
    return "follow:" + hashlib.sha256(joined.encode()).hexdigest()


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
    # (docs/rules.md "Contact order"); `no_contact` contacts are never included.
    family: tuple[Recipient, ...] = ()
    # After `family` (a carer shared by siblings whose other contacts differ) is not reached,
    # each child's own chain goes on separately; empty: `family` is the whole chain.
    follow_on: tuple[FollowOn, ...] = ()
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


class ContactCancelled(BaseModel):
    """Triage -> notifier: the decision behind a request no longer holds (a mark re-coded,
    docs/rules.md "Amendments"). Everything of the request not yet sent is cancelled, including
    rows held for quiet hours, the rate limit or a fallback wait; nothing starts sending after
    the cancellation is recorded. It may arrive before the request it cancels."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["contact.cancel/v1"] = Field("contact.cancel/v1", alias="schema")
    request_id: str = Field(min_length=1, max_length=200)
    school_urn: str
    pupil_ids: tuple[str, ...]
    reason: str = Field(max_length=500)
    cancelled_at: AwareDatetime


# What arrives on the notifier's queue.
NotifierCommand = Annotated[ContactRequest | ContactCancelled, Field(discriminator="schema_")]


class FamilyUnreachable(BaseModel):
    """Notifier -> triage: every contact of a request's family was tried and none was reached
    (failed, undelivered or opted out). The `unreachable` recipients have already been alerted;
    triage records the `family_unreachable` decision and puts a task on the officer's list."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["family.unreachable/v1"] = Field("family.unreachable/v1", alias="schema")
    request_id: str = Field(min_length=1, max_length=200)
    rule: str
    school_urn: str
    pupil_ids: tuple[str, ...]
    date: dt.date
    episode_start: dt.date | None = None
    contacts_tried: int
    detected_at: AwareDatetime


class ReplyReceived(BaseModel):
    """Notifier -> triage: a parent replied about these pupils; stop chasing them."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["reply.received/v1"] = Field("reply.received/v1", alias="schema")
    reply_id: str = Field(min_length=1, max_length=100)
    school_urn: str
    pupil_ids: tuple[str, ...]
    contact_ref: str
    received_at: AwareDatetime


class InboundUnmatched(BaseModel):
    """Notifier -> triage: an SMS that answers no message of ours (docs/rules.md "Parents who
    tell the school first"). The notifier has no roster; triage matches the number against
    the contacts of its pupils and keeps the text as a pending explanation for the school."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["inbound.unmatched/v1"] = Field("inbound.unmatched/v1", alias="schema")
    # The notifier's reply id (the MessageSid's): the same message delivered twice is one.
    message_id: str = Field(min_length=1, max_length=100)
    from_phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$")
    body: str = Field(max_length=1600)
    received_at: AwareDatetime


class FamilyOptedOut(BaseModel):
    """Notifier -> triage: a number replied STOP and is newly opted out (docs/rules.md
    "family_opted_out"), at these schools (those that texted it), or at every school when none
    had. Triage finds the families on its rosters and tells each school's attendance officer
    once what happens instead."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: Literal["family.opted_out/v1"] = Field("family.opted_out/v1", alias="schema")
    message_id: str = Field(min_length=1, max_length=100)
    from_phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$")
    # Empty: the STOP answered no school's message, so it holds for every school.
    school_urns: tuple[str, ...] = ()
    received_at: AwareDatetime


# What arrives on triage's queue from the notifier.
NotifierEvent = Annotated[ReplyReceived | FamilyUnreachable | InboundUnmatched | FamilyOptedOut,
                          Field(discriminator="schema_")]
