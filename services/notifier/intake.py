"""Turning contact requests into stored notifications, one per recipient and channel.

The unique key (request_id, recipient, channel) makes a redelivered or republished request a
no-op: at-least-once in, exactly-once effect out."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from broker_messages.contact import ContactRequest
from jinja2 import TemplateError
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.models import notifications
from notifier.templates import TemplateLibrary

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, engine: AsyncEngine, clock: Clock, templates: TemplateLibrary) -> None:
        self._engine = engine
        self._clock = clock
        self._templates = templates

    async def accept(self, requests: list[ContactRequest]) -> list[str | None]:
        now = self._clock.now()
        verdicts: list[str | None] = []
        rows: list[dict[str, Any]] = []
        for request in requests:
            try:
                rows.extend(self._rows(request, now))
                verdicts.append(None)
            except (TemplateError, ValueError) as error:
                verdicts.append(f"cannot render {request.rule}: {type(error).__name__}: {error}")
        if rows:
            async with self._engine.begin() as conn:
                for start in range(0, len(rows), 400):
                    await conn.execute(
                        dialect_insert(self._engine)(notifications)
                        .values(rows[start : start + 400])
                        .on_conflict_do_nothing()
                    )
        return verdicts

    def _rows(self, request: ContactRequest, now: Any) -> list[dict[str, Any]]:
        rows = []
        # Fallback along `family` is not implemented yet: the first family contact is used.
        for recipient in (*request.recipients, *request.family[:1]):
            for channel in recipient.channels:
                to = recipient.email if channel == "email" else recipient.phone
                if not to:
                    raise ValueError(f"recipient {recipient.ref} has no address for {channel}")
                rendered = self._templates.render_request(request, recipient, channel)
                rows.append({
                    "id": str(uuid.uuid4()),
                    "request_id": request.request_id,
                    "rule": request.rule,
                    "school_urn": request.school.urn,
                    "pupil_ids": [p.pupil_id for p in request.pupils],
                    "recipient_role": recipient.role,
                    "recipient_ref": recipient.ref,
                    "channel": channel,
                    "to": to,
                    "subject": rendered.subject,
                    "body": rendered.body,
                    "html": rendered.html,
                    "status": "pending",
                    "attempts": 0,
                    "due_at": now,
                    "created_at": now,
                    "updated_at": now,
                })
        return rows
