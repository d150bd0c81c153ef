"""The edges of a service's HTTP server (docs/security.md "Edges and data at rest").

`BodyLimit` refuses a request body over its limit with 413 before the application reads it:
at once when `Content-Length` says so, and as the bytes arrive when the body is streamed
(chunked, or a length that lies). Twilio's webhooks post a few kilobytes; without a limit a
200 MB body with a bad signature was read whole before the signature was checked.

`ReadDeadlineH11` closes a connection whose client has not finished sending its request
(headers and body) within `read_timeout` seconds: uvicorn has no read timeout of its own, and
half-sent requests otherwise stay open for ever, each holding a connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

_TOO_LARGE = b'{"detail":"request body too large"}'


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of body per request, or the limit of the first
    path prefix in `by_prefix` that the path starts with."""

    def __init__(self, app: ASGIApp, *, max_bytes: int,
                 by_prefix: Mapping[str, int] | None = None) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._by_prefix = dict(by_prefix or {})

    def limit_for(self, path: str) -> int:
        for prefix, limit in self._by_prefix.items():
            if path.startswith(prefix):
                return limit
        return self._max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, "request body too large")
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, counted_receive, watched_send)
        except HTTPException as error:
            # Raised while reading outside an endpoint (a middleware reading the body).
            if error.status_code != 413 or started:
                raise
            await _refuse(send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(_TOO_LARGE)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": _TOO_LARGE})


class ReadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on receiving each request: armed when the
    connection opens and again after each response, it closes the connection if by then the
    client has not sent a whole request. A request received in full is never cut off however
    long the application takes to answer it."""

    read_timeout: float = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_read_deadline()

    def _arm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_too_slow)

    def _read_too_slow(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing() or self.conn.their_state in (h11.DONE, h11.MUST_CLOSE,
                                                                       h11.CLOSED):
            return
        if self.conn.their_state is h11.IDLE and self.timeout_keep_alive_task is not None:
            # Idle between requests: the keep-alive timeout closes it, unless a request
            # starts first (which cancels that timeout), so watch again.
            self._arm_read_deadline()
            return
        self.transport.close()


def read_deadline_protocol(read_timeout: float) -> type[ReadDeadlineH11]:
    """The protocol class uvicorn is given, with this deadline."""
    return type("ReadDeadlineH11", (ReadDeadlineH11,), {"read_timeout": read_timeout})
