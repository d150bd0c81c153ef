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
    quiet_third_party()
    logging.getLogger("uvicorn.access").addFilter(without_query_string)


def without_query_string(record: logging.LogRecord) -> bool:
    """Access log lines name the path, not the query: a query may carry an address
    (`/api/v1/pupils?social_worker_email=…`)."""
    if isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, version, status = record.args
        if isinstance(path, str) and "?" in path:
            record.args = (client, method, path.split("?", 1)[0], version, status)
    return True


# Libraries whose INFO logs would carry message bodies, addresses or phone numbers.
QUIETENED = ("aiormq", "aio_pika", "twilio", "aiosmtplib", "httpx", "httpcore")


def quiet_third_party() -> None:
    for name in QUIETENED:
        # The twilio library, for one, logs request bodies (phone numbers) at INFO.
        logging.getLogger(name).setLevel(logging.WARNING)
