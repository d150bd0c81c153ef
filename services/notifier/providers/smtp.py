"""Email through aiosmtplib: one message per recipient, plain text with an HTML alternative."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

import aiosmtplib

from notifier.providers import OutgoingMessage, ProviderResult
from notifier.providers.errors import classify


class SmtpEmail:
    def __init__(self, *, host: str, port: int, sender: str, username: str | None,
                 password: str | None, starttls: bool, timeout: float) -> None:
        self._options = {
            "hostname": host, "port": port, "username": username, "password": password,
            "start_tls": starttls, "timeout": timeout,
        }
        self._sender = sender

    async def send(self, message: OutgoingMessage) -> ProviderResult:
        email = EmailMessage()
        email["From"] = formataddr((message.sender_name or "", self._sender))
        if message.reply_to:
            email["Reply-To"] = formataddr((message.sender_name or "", message.reply_to))
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        email["Date"] = formatdate(localtime=False)
        # A stable id lets a mail server or reader spot a re-sent copy.
        message_id = make_msgid(idstring=message.notification_id, domain="absence.invalid")
        email["Message-ID"] = message_id
        email.set_content(message.body)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        try:
            await aiosmtplib.send(email, **self._options)  # type: ignore[arg-type]
        except Exception as error:
            raise classify(error) from error
        return ProviderResult(provider_id=message_id.strip("<>")[:64] or str(uuid.uuid4()))

    async def find_sent(self, message: OutgoingMessage) -> ProviderResult | None:
        return None  # SMTP cannot be asked what it accepted: the documented duplicate window

    async def close(self) -> None:
        return None
