"""The notifier's HTTP API: the notification log (contract §4) and Twilio webhooks (§5)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel
from servicekit.web import Authenticated
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator

from notifier.models import notifications

if TYPE_CHECKING:
    from notifier.app import NotifierService

log = logging.getLogger(__name__)

api = APIRouter(prefix="/api/v1", dependencies=[Authenticated])
webhooks = APIRouter(prefix="/twilio", tags=["twilio"])

# Statuses only move forward; a late or repeated callback cannot undo a later state.
_RANK = {"pending": 0, "sending": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2}
_TWILIO_STATUS = {"sent": "sent", "delivered": "delivered", "undelivered": "undelivered",
                  "failed": "failed", "completed": "delivered", "busy": "undelivered",
                  "no-answer": "undelivered", "canceled": "failed"}


def _service(request: Request) -> NotifierService:
    return request.app.state.service  # type: ignore[no-any-return]


class Notification(BaseModel):
    id: str
    rule: str
    school_urn: str
    pupil_ids: list[str]
    recipient_role: str
    channel: Literal["sms", "voice", "email"]
    to: str
    status: str
    provider_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@api.get("/notifications", response_model=list[Notification])
async def list_notifications(
    request: Request,
    school_urn: Annotated[str | None, Query(pattern=r"^[0-9]{6,8}$")] = None,
    pupil_id: Annotated[str | None, Query(max_length=64)] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> Any:
    query = select(notifications).order_by(notifications.c.created_at, notifications.c.id)
    if school_urn:
        query = query.where(notifications.c.school_urn == school_urn)
    if rule:
        query = query.where(notifications.c.rule == rule)
    async with _service(request).engine.connect() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
    if pupil_id:
        rows = [row for row in rows if pupil_id in row["pupil_ids"]]
    for row in rows:
        if row["status"] == "sending":
            row["status"] = "pending"
    return rows[:limit]


async def _signed_form(request: Request, path: str) -> dict[str, str]:
    """Contract §5: validate X-Twilio-Signature against PUBLIC_BASE_URL + path; 403 otherwise."""
    service = _service(request)
    body = (await request.body())[:65536]
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    token = service.settings.twilio_auth_token
    url = service.settings.public_base_url.rstrip("/") + path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature or not RequestValidator(token.get_secret_value()).validate(
        url, params, signature
    ):
        log.warning("notifier.webhook.forbidden path=%s", path)
        raise HTTPException(403, "invalid Twilio signature")
    return params


@webhooks.post("/status")
async def twilio_status(request: Request) -> Response:
    params = await _signed_form(request, "/twilio/status")
    service = _service(request)
    sid = params.get("MessageSid") or params.get("CallSid")
    status = _TWILIO_STATUS.get(params.get("MessageStatus") or params.get("CallStatus") or "")
    if sid and status:
        lower_ranks = [s for s, rank in _RANK.items() if rank < _RANK[status]]
        async with service.engine.begin() as conn:
            result = await conn.execute(
                update(notifications)
                .where(notifications.c.provider_id == sid, notifications.c.status.in_(lower_ranks))
                .values(status=status, updated_at=service.clock.now(),
                        error=params.get("ErrorCode") or None)
            )
        service.metrics.callbacks.labels("applied" if result.rowcount else "ignored").inc()
    return Response(status_code=204)


@webhooks.post("/inbound")
async def twilio_inbound(request: Request) -> Response:
    params = await _signed_form(request, "/twilio/inbound")
    log.info("notifier.reply.received message_sid=%s", params.get("MessageSid", ""))
    return Response('<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
                    media_type="application/xml")
