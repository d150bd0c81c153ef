"""Running a service: its background loops, and serving its API with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI

from servicekit.limits import read_deadline_protocol
from servicekit.settings import ServiceSettings

# An idle connection between two requests is closed after this long (uvicorn's default).
KEEP_ALIVE_SECONDS = 5
# A request line and headers larger than this are refused with 400 (h11's default is 16 KB
# too; set here so it is one decision, not a library default).
MAX_HEADER_BYTES = 16 * 1024


class Workers:
    """The background loops of one service (consumer, scheduler, relay, dispatcher)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coroutine))

    async def stop(self, timeout: float = 10.0) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a loop stuck in a driver call must not hold up shutdown for ever.
            await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks.clear()


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def freeze_startup_objects() -> None:
    """What start-up built (modules, table metadata, templates, settings) lives as long as
    the process. Keep it out of the collector's full passes: on a busy morning a consumer
    allocates fast enough to trigger them every second or so, and each one walked all of it
    again."""
    gc.collect()
    gc.freeze()


class ServerEdges(Protocol):
    """What `server_config` reads: every service's settings and the staff app's have it."""

    host: str
    port: int
    read_timeout_seconds: float
    max_connections: int


def server_config(app: Any, settings: ServerEdges) -> uvicorn.Config:
    """uvicorn with the edges of docs/security.md "Edges and data at rest": at most
    `max_connections` at once (503 beyond), half-sent requests closed after
    `read_timeout_seconds`, bounded headers and keep-alive."""
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None,
        http=read_deadline_protocol(settings.read_timeout_seconds),
        limit_concurrency=settings.max_connections, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES)


def serve(service: Service, app: FastAPI, settings: ServiceSettings) -> None:
    """Start the service with the API and stop it when uvicorn shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        freeze_startup_objects()
        try:
            yield
        finally:
            await service.stop()

    app.router.lifespan_context = lifespan
    uvicorn.Server(server_config(app, settings)).run()
