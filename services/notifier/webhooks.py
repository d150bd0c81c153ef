"""Twilio webhooks (docs/contract.md §5): delivery status callbacks and inbound SMS.

Both validate X-Twilio-Signature against PUBLIC_BASE_URL + path with the twilio library's
RequestValidator; an invalid or missing signature gets 403 and changes nothing. A status is
recorded by notifier.notification_store (kept there if it came before its provider id); a
family row's chain is then moved on by the dispatcher (`family_rows_settled`)."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, TypeAdapter
from servicekit.openapi import request_body
from twilio.request_validator import RequestValidator

from notifier import notification_store, optout
from notifier.deps import ServiceDep
from notifier.notification_store import Status

log = logging.getLogger(__name__)

webhooks = APIRouter(prefix="/twilio", tags=["twilio"])

# Message statuses, and call statuses: a call not answered counts as not delivered.
_TWILIO_STATUS = {"sent": Status.SENT, "delivered": Status.DELIVERED,
                  "undelivered": Status.UNDELIVERED, "failed": Status.FAILED,
                  "completed": Status.DELIVERED, "busy": Status.UNDELIVERED,
                  "no-answer": Status.UNDELIVERED, "canceled": Status.FAILED}
# Twilio posts a few kilobytes; `servicekit.limits.BodyLimit` refuses more before it is read.
MAX_WEBHOOK_BYTES = 64 * 1024
# Twilio's ids are two letters and 32 hex digits; anything else is not one of theirs.
_TWILIO_SID = re.compile(r"[A-Za-z0-9]{1,64}")
_SID_FIELDS = ("MessageSid", "SmsSid", "CallSid")
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class _TwilioForm(BaseModel):
    # Twilio posts many more fields; every one is covered by its signature.
    model_config = ConfigDict(extra="allow")


class StatusCallback(_TwilioForm):
    """The fields of Twilio's status callback this service reads (a message's or a call's)."""

    MessageSid: str | None = None
    MessageStatus: str | None = None
    CallSid: str | None = None
    CallStatus: str | None = None
    ErrorCode: str | None = None


class InboundMessage(_TwilioForm):
    """The fields of Twilio's incoming-message webhook this service reads."""

    MessageSid: str | None = None
    SmsSid: str | None = None
    From: str | None = None
    To: str | None = None
    Body: str | None = None


def _form(model: type[_TwilioForm]) -> dict[str, object]:
    """Read by `_signed_form` itself (the signature covers the raw fields), described here."""
    return request_body(TypeAdapter(model), "application/x-www-form-urlencoded",
                        "Posted by Twilio, signed in the X-Twilio-Signature header")


async def _signed_form(request: Request, service: ServiceDep, path: str) -> dict[str, str]:
    """Contract §5: validate X-Twilio-Signature against PUBLIC_BASE_URL + path; 403 otherwise."""
    body = await request.body()
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
    for field in _SID_FIELDS:
        if field in params and params[field] and not _TWILIO_SID.fullmatch(params[field]):
            log.warning("notifier.webhook.bad_sid path=%s field=%s", path, field)
            raise HTTPException(400, [{"loc": ["body", field], "type": "value_error",
                                       "msg": "must be at most 64 letters and digits"}])
    return params


@webhooks.post("/status", openapi_extra=_form(StatusCallback))
async def twilio_status(request: Request, service: ServiceDep) -> Response:
    params = await _signed_form(request, service, "/twilio/status")
    sid = params.get("MessageSid") or params.get("CallSid")
    status = _TWILIO_STATUS.get(params.get("MessageStatus") or params.get("CallStatus") or "")
    error_code = params.get("ErrorCode") or None
    if status in (Status.FAILED, Status.UNDELIVERED) and error_code == optout.UNSUBSCRIBED_CODE:
        status = Status.SUPPRESSED
    if not sid or not status:
        return Response(status_code=204)
    async with service.engine.begin() as conn:
        receipt = await notification_store.record_receipt(conn, sid, status, error_code,
                                                          service.clock.now())
    if receipt.early:
        # docs/reliability.md "Early status callbacks": applied when the id is recorded.
        service.metrics.callbacks.labels("early").inc()
        log.info("notifier.status.early provider_id=%s status=%s", sid, status)
        return Response(status_code=204)
    service.metrics.callbacks.labels("applied" if receipt.changed else "ignored").inc()
    for row in receipt.changed:
        log.info("notifier.status.applied notification_id=%s status=%s", row.id, status)
    family = [row.request_id for row in receipt.changed if row.kind == "family"]
    if family and service.dispatcher is not None:
        await service.dispatcher.family_rows_settled(family)
    return Response(status_code=204)


@webhooks.post("/inbound", openapi_extra=_form(InboundMessage))
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
