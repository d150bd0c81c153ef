"""The notifier's retention (docs/security.md "Retention"): replies from numbers no school
texted, and status callbacks whose provider id was never recorded (notifier.notification_store
applies the others when the id is recorded)."""

from __future__ import annotations

import datetime as dt

from servicekit.housekeeping import Purge
from sqlalchemy import false

from notifier.models import early_status_callbacks, replies
from notifier.settings import NotifierSettings


def notifier_purges(settings: NotifierSettings, now: dt.datetime) -> list[Purge]:
    unmatched_before = now - dt.timedelta(days=settings.unmatched_reply_days)
    early_before = now - dt.timedelta(hours=settings.early_callback_hours)
    return [
        Purge("unmatched_replies", replies, replies.c.id,
              (replies.c.matched == false()) & (replies.c.received_at < unmatched_before)),
        Purge("early_status_callbacks", early_status_callbacks,
              early_status_callbacks.c.provider_id,
              early_status_callbacks.c.received_at < early_before),
    ]
