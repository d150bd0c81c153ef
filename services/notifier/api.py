"""The notifier's HTTP API: the notification log (docs/contract.md §4), replies for staff and template
previews. Twilio's webhooks are in notifier.webhooks."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any, Literal

from broker_messages.contact import Channel, ContactRequest, PupilRef, Recipient, School
from fastapi import APIRouter, HTTPException, Path, Query
from jinja2 import TemplateError, TemplateNotFound
from pydantic import AwareDatetime, BaseModel, Field
from servicekit.keys import Principal
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import exists, func, literal, select

from notifier.compose import UNREACHABLE_RULE, render_unreachable
from notifier.deps import (
    EngineDep,
    NotificationsReader,
    RepliesReader,
    TemplatesDep,
    TemplatesReader,
)
from notifier.models import notifications, replies
from notifier.sms_cost import sms_cost
from notifier.templates import AUDIENCES

log = logging.getLogger(__name__)

api = APIRouter(prefix="/api/v1", dependencies=[Authenticated])

SchoolUrn = Annotated[str | None, Query(pattern=r"^[0-9]{6,8}$")]
PupilId = Annotated[str | None, Query(max_length=64)]
# An aware timestamp: a list from then on (the staff app polls with the last one it saw).
Since = Annotated[AwareDatetime | None, Query()]


def _names_pupil(column: Any, pupil_id: str, dialect_name: str) -> Any:
    """Rows whose JSON list of pupil ids holds this one, decided by the database so that
    `limit` counts only matching rows."""
    elements_of = func.json_each if dialect_name == "sqlite" else func.json_array_elements_text
    elements = elements_of(column).table_valued("value")
    return exists(select(literal(1)).select_from(elements).where(elements.c.value == pupil_id))


def _of_callers_schools(query: Any, column: Any, caller: Principal,
                        school_urn: str | None) -> Any:
    """A list asked for one school (which the key must serve), or for all the key serves:
    never a row of another school, nor one of no school unless the key serves every school."""
    if school_urn:
        ensure_school(caller, school_urn)
        return query.where(column == school_urn)
    if caller.schools is not None:
        return query.where(column.in_(sorted(caller.schools)))
    return query


class Notification(BaseModel):
    id: str
    request_id: str
    rule: str
    school_urn: str
    pupil_ids: list[str]
    recipient_role: str
    channel: Literal["sms", "voice", "email"]
    to: str
    language: str
    # The message as rendered for this recipient (subject: email only), for staff to read.
    subject: str | None
    body: str
    status: str
    provider_id: str | None
    # The last provider error, in the provider's words.
    error: str | None
    # When it is (or was) to go: later than created_at when held for quiet hours.
    due_at: dt.datetime
    # When the provider accepted it.
    sent_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    # Why a row was cancelled ("cancelled: re-coded …"), or that a cancellation arrived while
    # it was being sent; None otherwise.
    note: str | None = None


@api.get("/notifications", response_model=list[Notification])
async def list_notifications(
    engine: EngineDep,
    caller: NotificationsReader,
    school_urn: SchoolUrn = None,
    pupil_id: PupilId = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    request_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Since = None,
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> Any:
    """The log oldest first (`order=desc`: newest first); filters and `limit` are applied by
    the database, so `limit` counts only matching rows."""
    created, key = notifications.c.created_at, notifications.c.id
    query = _of_callers_schools(
        select(notifications)
        .order_by(*((created.desc(), key.desc()) if order == "desc" else (created, key)))
        .limit(limit),
        notifications.c.school_urn, caller, school_urn)
    if rule:
        query = query.where(notifications.c.rule == rule)
    if request_id:
        query = query.where(notifications.c.request_id == request_id)
    if since:
        query = query.where(created >= since)
    if pupil_id:
        query = query.where(_names_pupil(notifications.c.pupil_ids, pupil_id,
                                         engine.dialect.name))
    async with engine.connect() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
    for row in rows:
        if row["status"] == "sending":
            row["status"] = "pending"
    return rows


class Episode(BaseModel):
    pupil_id: str
    episode_start: str


class Reply(BaseModel):
    id: str
    school_urn: str | None
    from_: str = Field(serialization_alias="from")
    body: str
    kind: Literal["reply", "opt_out", "opt_in"]
    matched: bool
    contact_ref: str | None
    pupil_ids: list[str]
    episodes: list[Episode]
    received_at: dt.datetime


@api.get("/replies", response_model=list[Reply], response_model_by_alias=True)
async def list_replies(
    engine: EngineDep,
    caller: RepliesReader,
    school_urn: SchoolUrn = None,
    pupil_id: PupilId = None,
    since: Since = None,
    matched: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> Any:
    """Replies for staff, newest first; `matched=false` lists the ones from unknown numbers.
    Filters and `limit` are applied by the database."""
    query = _of_callers_schools(
        select(replies).order_by(replies.c.received_at.desc(), replies.c.id).limit(limit),
        replies.c.school_urn, caller, school_urn)
    if matched is not None:
        query = query.where(replies.c.matched == matched)
    if pupil_id:
        query = query.where(_names_pupil(replies.c.pupil_ids, pupil_id, engine.dialect.name))
    if since:
        query = query.where(replies.c.received_at >= since)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Reply(from_=row.from_phone, **{k: v for k, v in row._mapping.items()
                                            if k in Reply.model_fields})
            for row in rows]


class Preview(BaseModel):
    rule: str
    channel: Channel
    language: str
    # The recipient role rendered for, and every role this rule's messages go to.
    role: str
    roles: list[str]
    subject: str | None
    body: str
    html: str | None
    # SMS only: what the text costs (GSM-7 160 characters a segment, UCS-2 70) and, for UCS-2,
    # the characters that forced it.
    encoding: str | None = None
    segments: int | None = None
    outside_gsm: str | None = None


def _sample_request(rule: str) -> ContactRequest:
    """A request as triage would send it for `rule`, with sample figures: absent since Thursday,
    day 3 on the Monday, and every `details` key some rule's planner sets (triage/rules/)."""
    return ContactRequest(
        request_id=f"preview:{rule}", rule=rule,
        school=School(urn="000000", name="Millbrook Primary School", phone="+441235764822"),
        date=dt.date(2026, 11, 23), episode_start=dt.date(2026, 11, 19),
        pupils=(PupilRef(pupil_id="P0001", given_name="Sally", family_name="Smith"),),
        details={"attendance_percent": 89.5, "absence_percent": 10.5, "possible_sessions": 124,
                 "sessions": "AM", "contact_attempts": 1, "home_visit_planned": 0,
                 "school_contact": "R Baish", "visit_day": "2026-11-23",
                 "recode_within_days": 5, "about_rule": "first day contact",
                 "about_rule_id": "first_day_contact",
                 "contacts_tried": 2, "count": 3, "pupils": 2, "pupil_ids": "P0107, P0108",
                 "discard_on": "2026-12-04", "act_by": "2026-11-30",
                 "year_family_contacts": 6, "year_home_visits": 1,
                 "stage1_sent_on": "2026-10-12", "school_days": 10, "days_absent": 15.5,
                 "sessions_needed": 10, "weeks": 10,
                 "instead": "emails to Jane Smith still go; then John Smith (father) is tried"},
        requested_at=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC),
    )


@api.get("/templates/{rule}/preview", response_model=Preview)
async def preview_template(
    templates: TemplatesDep,
    caller: TemplatesReader,  # the scope check; previews hold no school's data
    rule: Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$")],
    channel: Channel = "sms",
    language: Annotated[str, Query(pattern=r"^[a-z]{2,3}$")] = "en",
    role: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
) -> Any:
    """Render a template with sample data, for staff to review wording (falls back to English
    as a real message would). Without `role`, for the rule's first recipient role (AUDIENCES):
    a staff alert is never previewed as if it went to a parent."""
    roles: list[str] = list(AUDIENCES.get(rule, ("parent",)))
    role = role or roles[0]
    sample = _sample_request(rule)
    try:
        recipient = Recipient(role=role, ref="preview", name="Jane Smith",  # type: ignore[arg-type]
                              phone="+447700900001", email="jane@example.com",
                              language=language, channels=(channel,))
    except ValueError as error:
        raise HTTPException(422, f"unknown recipient role {role!r}; {rule} goes to: "
                            f"{', '.join(roles)}") from error
    try:
        if rule == UNREACHABLE_RULE:
            sample = sample.model_copy(update={"family": (recipient,)})
            rendered = render_unreachable(templates, sample, recipient, channel)
        else:
            rendered = templates.render_request(sample, recipient, channel)
    except TemplateNotFound as error:
        raise HTTPException(404, f"no {channel} template for {rule}") from error
    except TemplateError as error:
        raise HTTPException(422, f"template error for role {role}: {error}; {rule} goes to: "
                            f"{', '.join(roles)}") from error
    cost = sms_cost(rendered.body) if channel == "sms" else None
    return Preview(rule=rule, channel=channel, language=language, role=role, roles=roles,
                   subject=rendered.subject, body=rendered.body, html=rendered.html,
                   encoding=cost.encoding if cost else None,
                   segments=cost.segments if cost else None,
                   outside_gsm=cost.outside_gsm if cost else None)
