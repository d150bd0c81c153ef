"""The HTTP server's edges over real sockets: bodies refused by size before they are read,
and half-sent requests disconnected (docs/security.md "Edges and data at rest")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from notifier.app import create_app as notifier_app
from servicekit.runtime import server_config
from servicekit.settings import ServiceSettings

from tests.stack import Stack

READ_TIMEOUT = 0.5


class _Settings(ServiceSettings):
    port: int = 0
    database_url: str = "sqlite+aiosqlite:///:memory:"
    prefetch: int = 1


@contextlib.asynccontextmanager
async def served(app: Any, **settings: Any) -> AsyncIterator[int]:
    """The app behind uvicorn as `servicekit.runtime.serve` configures it, on a free port."""
    config = server_config(app, _Settings(read_timeout_seconds=READ_TIMEOUT, **settings))
    config.lifespan = "off"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)  # uvicorn offers no event for "listening"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        # Forced: a connection the server never closed must fail the test, not hang it.
        server.should_exit = server.force_exit = True
        await asyncio.wait_for(task, 10)


async def _send_until_answered(port: int, head: bytes, chunk: bytes, most: int,
                               chunked: bool = False) -> tuple[bytes, int]:
    """Send the head, then body chunks until the server answers or `most` bytes are sent;
    returns the status line and how many body bytes went."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    sent = 0
    answer = asyncio.create_task(reader.readline())
    try:
        while sent < most and not answer.done():
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent += len(chunk)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.sleep(0)
        return await asyncio.wait_for(answer, 5), sent
    finally:
        writer.close()


def _post(path: str, length: int | None) -> bytes:
    size = b"Content-Length: %d" % length if length is not None else b"Transfer-Encoding: chunked"
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Twilio-Signature: forged\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n%s\r\n\r\n" % (
                path.encode(), size))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_200_mb_webhook_with_a_bad_signature_is_refused_before_it_is_read(
        stack: Stack) -> None:
    async with served(notifier_app(stack.notifier)) as port:
        status, sent = await _send_until_answered(
            port, _post("/twilio/inbound", 200 * 1024 * 1024), b"a" * 65536, 16 * 1024 * 1024)
        assert status.startswith(b"HTTP/1.1 413"), status
        # Streamed without a length, it is cut off once past the webhook limit.
        status, sent = await _send_until_answered(
            port, _post("/twilio/inbound", None), b"a" * 16384, 16 * 1024 * 1024, chunked=True)
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent < 4 * 1024 * 1024


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_api_keeps_its_8_mb_body_limit(stack: Stack) -> None:
    async with served(notifier_app(stack.notifier)) as port:
        status, _ = await _send_until_answered(
            port, _post("/api/v1/notifications", 9 * 1024 * 1024), b"", 0)
        assert status.startswith(b"HTTP/1.1 413"), status


def _echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(READ_TIMEOUT * 3)  # the application's time, not the client's
        return {"answered": True}

    return app


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), READ_TIMEOUT + 3) is not None
    except ConnectionError:
        return True


async def test_half_sent_requests_are_disconnected_after_the_read_timeout() -> None:
    partial = [
        b"",  # connected, nothing sent
        b"POST /echo HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",  # body short
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ]
    async with served(_echo_app()) as port:
        connections = [await asyncio.open_connection("127.0.0.1", port)
                       for _ in range(60)]
        for index, (_, writer) in enumerate(connections):
            writer.write(partial[index % len(partial)])
            await writer.drain()
        started = asyncio.get_running_loop().time()
        closed = await asyncio.gather(*[_closed_by_server(r) for r, _ in connections])
        elapsed = asyncio.get_running_loop().time() - started
        assert all(closed) and elapsed < READ_TIMEOUT + 2.5, elapsed
        for _, writer in connections:
            writer.close()
        # The server still answers a whole request, and a slow answer is not cut off.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_a_request_trickled_after_a_kept_alive_response_is_disconnected_too() -> None:
    async with served(_echo_app()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), READ_TIMEOUT * 2 + 3)
        writer.close()
