"""In-loop SMTP sink (aiosmtpd) that records mail and can script SMTP failures.

Why on the test's own event loop (``loop.create_server``) rather than aiosmtpd's
threaded ``Controller``: recording and waiting then happen on one loop, so
``wait_for`` is a plain ``asyncio.Condition`` wait with no thread hand-off and
no sleep-polling.

What ``aiosmtplib`` (5.1) raises for each scripted fault, with one recipient:

* ``fail_next(..., stage="DATA")`` (default) -> ``SMTPDataError``, a
  ``SMTPResponseException`` whose ``.code`` is the scripted code.
* ``fail_next(..., stage="RCPT")`` -> ``SMTPRecipientsRefused`` (NOT a
  ``SMTPResponseException``); the code is on ``exc.recipients[0].code``.
* ``await refuse_connections()`` -> ``SMTPConnectError`` (a ``ConnectionError``).
"""

from __future__ import annotations

import asyncio
import email
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, Literal, Self, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

Stage = Literal["RCPT", "DATA"]


@dataclass(frozen=True)
class SinkEnvelope:
    """SMTP envelope of one accepted message (may differ from the To/Cc headers)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]


class _Handler:
    """aiosmtpd hooks; defined separately so only ``handle_*`` names are exposed."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        fault = self._sink._take_fault("RCPT")
        if fault is not None:
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._sink._take_fault("DATA")
        if fault is not None:
            return fault
        await self._sink._record(envelope)
        return "250 2.0.0 OK: queued"


class SmtpSink:
    """Loopback SMTP server recording ``EmailMessage``s (``email.policy.default``)."""

    def __init__(self, host: str = "127.0.0.1", hostname: str = "smtp-sink.test") -> None:
        self.host = host
        self.port = 0
        # A fixed hostname: aiosmtpd otherwise calls socket.getfqdn(), which can block on DNS.
        self.hostname = hostname
        self.messages: list[EmailMessage] = []
        self.envelopes: list[SinkEnvelope] = []  # index-aligned with ``messages``
        self._faults: deque[tuple[Stage, str]] = deque()
        self._handler = _Handler(self)
        self._server: asyncio.Server | None = None
        self._sessions: set[SMTP] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> SmtpSink:
        await self._listen()
        return self

    async def stop(self) -> None:
        await self._close_listener()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- scripting -------------------------------------------------------------------

    def fail_next(self, count: int, code: int = 451, text: str = "4.3.0 try again",
                  *, stage: Stage = "DATA") -> None:
        """Answer the next ``count`` RCPT or DATA commands with ``code text``."""
        self._faults.extend([(stage, f"{code} {text}")] * count)

    async def refuse_connections(self) -> None:
        """Stop listening (clients get ECONNREFUSED); open sessions are left alone."""
        await self._close_listener()

    async def accept_connections(self) -> None:
        """Listen again on the same port, so the app's configured address still works."""
        if self._server is None:
            await self._listen()

    def reset(self) -> None:
        """Forget received mail and scripted faults; listening state is unchanged."""
        self.messages.clear()
        self.envelopes.clear()
        self._faults.clear()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Return once ``n`` messages arrived; AssertionError (not a hang) otherwise."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.messages) >= n)
        except TimeoutError:
            subjects = [m["Subject"] for m in self.messages]
            raise AssertionError(
                f"SmtpSink: expected >= {n} messages within {timeout}s, got "
                f"{len(self.messages)} (subjects {subjects!r})") from None
        return self.messages

    # ---- internals -------------------------------------------------------------------

    def _take_fault(self, stage: Stage) -> str | None:
        if self._faults and self._faults[0][0] == stage:
            return self._faults.popleft()[1]
        return None

    async def _record(self, envelope: Envelope) -> None:
        raw = cast(bytes, envelope.original_content or envelope.content)
        message = cast(EmailMessage, email.message_from_bytes(raw, policy=default_policy))
        async with self._changed:
            self.messages.append(message)
            self.envelopes.append(SinkEnvelope(envelope.mail_from or "",
                                               tuple(envelope.rcpt_tos)))
            self._changed.notify_all()

    def _protocol(self) -> SMTP:
        return _TrackedSMTP(self._sessions, self._handler, hostname=self.hostname,
                            loop=asyncio.get_running_loop())

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class _TrackedSMTP(SMTP):
    """SMTP session kept in the sink's registry while open, so ``stop()`` can close it."""

    def __init__(self, registry: set[SMTP], handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._registry = registry
        registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(exc)
