"""The one table that says which provider errors are worth retrying (docs/rules.md "Contacting people", issue #4):
rate limits, server errors, time-outs and dropped connections are transient; an invalid
number, an unsubscribed number, a landline for SMS or a permanent SMTP refusal are not."""

from __future__ import annotations

import asyncio

import aiohttp
import aiosmtplib
from twilio.base.exceptions import TwilioRestException

from notifier.providers import ProviderError

# Twilio error codes that no retry can fix.
PERMANENT_TWILIO_CODES = {
    21211: "invalid 'To' number",
    21610: "recipient has unsubscribed (STOP)",
    21614: "'To' number is not a mobile number",
    21408: "permission to send to this region is not enabled",
    21612: "the 'To' number cannot be reached from this sender",
}
RETRYABLE_TWILIO_CODES = {20429: "too many requests", 20500: "internal error", 20503: "unavailable"}


def classify(error: BaseException) -> ProviderError:
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, TwilioRestException):
        code = error.code if isinstance(error.code, int) else None
        if code in PERMANENT_TWILIO_CODES:
            return ProviderError(PERMANENT_TWILIO_CODES[code], retryable=False, code=str(code))
        retryable = (
            code in RETRYABLE_TWILIO_CODES or error.status == 429 or error.status >= 500
        )
        return ProviderError(f"twilio answered {error.status}", retryable=retryable,
                             code=str(code or error.status))
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        code = error.recipients[0].code
        return ProviderError(f"smtp refused the recipient ({code})",
                             retryable=400 <= code < 500, code=str(code))
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return ProviderError(f"smtp answered {error.code}", retryable=400 <= error.code < 500,
                             code=str(error.code))
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerDisconnectedError):
        return ProviderError(f"no answer: {type(error).__name__}", retryable=True,
                             ambiguous=True)
    if isinstance(error, aiosmtplib.SMTPException | aiohttp.ClientError | OSError):
        return ProviderError(f"transient failure: {type(error).__name__}", retryable=True)
    return ProviderError(f"unexpected failure: {type(error).__name__}", retryable=False)
