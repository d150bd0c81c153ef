"""POST /inbound/email (docs/contract.md §5): a parent's email reply, posted by the inbound-parse
provider that receives mail for NOTIFIER_REPLY_DOMAIN (or a small relay in front of it).

The body is JSON (`message_id`, `to`, `from`, `text`) and `X-Signature` is the hex HMAC-SHA256
of the exact body bytes under NOTIFIER_INBOUND_EMAIL_SECRET; a missing or wrong signature gets
403 and changes nothing, and without the secret the route answers 404 (nothing is accepted
unsigned). A signed body with bad fields gets 422 listing every problem. What is stored and
announced is notifier.email_replies'."""

from __future__ import annotations

import hashlib
import hmac
import logging

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notifier.deps import ServiceDep

log = logging.getLogger(__name__)

inbound = APIRouter(prefix="/inbound", tags=["inbound"])
# An email reply's text and headers; attachments are not wanted and not accepted.
MAX_INBOUND_EMAIL_BYTES = 256 * 1024


class InboundEmail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: str = Field(min_length=1, max_length=998)
    to: str = Field(min_length=3, max_length=254)
    from_: str = Field(alias="from", min_length=3, max_length=254)
    text: str = Field(max_length=100_000)


@inbound.post("/email", status_code=202)
async def inbound_email(request: Request, service: ServiceDep) -> Response:
    secret = service.settings.inbound_email_secret
    if secret is None:
        raise HTTPException(404, "inbound email is not configured")
    body = await request.body()
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Signature", "")):
        log.warning("notifier.email_reply.forbidden")
        raise HTTPException(403, "invalid signature")
    try:
        email = InboundEmail.model_validate_json(body)
    except ValidationError as error:
        raise HTTPException(422, error.errors(include_url=False, include_input=False)) from error
    await service.email_replies.receive(email.message_id, email.to, email.from_, email.text)
    return Response(status_code=202)
