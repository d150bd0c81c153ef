"""Twilio webhooks (docs/contract.md §5): delivery status callbacks and inbound SMS.

Both validate X-Twilio-Signature against PUBLIC_BASE_URL + path with the twilio library's
RequestValidator; an invalid or missing signature gets 403 and changes nothing."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import update
from twilio.request_validator import RequestValidator

from notifier import optout
from notifier.deps import ServiceDep
from notifier.fallback import mark_for_check
from notifier.models import notifications

log = logging.getLogger(__name__)

webhooks = APIRouter(prefix="/twilio", tags=["twilio"])

# Statuses only move forward; a late or repeated callback cannot undo a later state.
_RANK = {"pending": 0, "sending": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2,
         "suppressed": 3, "cancelled": 3}
# Message statuses, and call statuses: a call not answered counts as not delivered.
_TWILIO_STATUS = {"sent": "sent", "delivered": "delivered", "undelivered": "undelivered",
                  "failed": "failed", "completed": "delivered", "busy": "undelivered",
                  "no-answer": "undelivered", "canceled": "failed"}
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def _signed_form(request: Request, service: ServiceDep, path: str) -> dict[str, str]:
    """Contract §5: validate X-Twilio-Signature against PUBLIC_BASE_URL + path; 403 otherwise."""
    body = (await request.body())[:65536]
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    token = service.settings.twilio.auth_token
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
async def twilio_status(request: Request, service: ServiceDep) -> Response:
    params = await _signed_form(request, service, "/twilio/status")
    sid = params.get("MessageSid") or params.get("CallSid")
    status = _TWILIO_STATUS.get(params.get("MessageStatus") or params.get("CallStatus") or "")
    error_code = params.get("ErrorCode") or None
    if status in ("failed", "undelivered") and error_code == optout.UNSUBSCRIBED_CODE:
        status = "suppressed"
    if not sid or not status:
        return Response(status_code=204)
    now = service.clock.now()
    lower = [name for name, rank in _RANK.items() if rank < _RANK[status]]
    async with service.engine.begin() as conn:
        changed = await conn.execute(
            update(notifications)
            .where(notifications.c.provider_id == sid, notifications.c.status.in_(lower))
            .values(status=status, updated_at=now, error=error_code)
            .returning(notifications.c.id, notifications.c.request_id, notifications.c.kind,
                       notifications.c.channel, notifications.c.school_urn, notifications.c.to)
        )
        rows = changed.all()
        for row in rows:
            if status == "suppressed" and row.channel == "sms":
                await optout.opt_out(conn, row.school_urn, row.to, "twilio-21610", now)
            if row.kind == "family":
                await mark_for_check(conn, row.request_id, now)
    service.metrics.callbacks.labels("applied" if rows else "ignored").inc()
    for row in rows:
        log.info("notifier.status.applied notification_id=%s status=%s", row.id, status)
        if row.kind == "family" and service.chase is not None:
            try:
                if await service.chase.advance(row.request_id) and service.dispatcher:
                    service.dispatcher.wake()
            except Exception:
                log.exception("notifier.family.advance_failed request_id=%s", row.request_id)
    return Response(status_code=204)


@webhooks.post("/inbound")
async def twilio_inbound(request: Request, service: ServiceDep) -> Response:
    params = await _signed_form(request, service, "/twilio/inbound")
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    sender = params.get("From", "")
    if not sid or not sender:
        log.warning("notifier.reply.incomplete message_sid=%s", sid)
        return Response(_EMPTY_TWIML, media_type="application/xml")
    await service.replies.receive(sid, sender, params.get("Body", ""))
    # An empty TwiML answer: no automatic text back to a parent (Twilio itself answers STOP).
    return Response(_EMPTY_TWIML, media_type="application/xml")
