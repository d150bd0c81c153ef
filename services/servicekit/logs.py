"""Logging set-up. Log lines carry ids (school URN, pupil id, event id), never phone
numbers, email addresses or names."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    # The twilio library logs request bodies (phone numbers) at INFO.
    logging.getLogger("twilio").setLevel(logging.WARNING)
