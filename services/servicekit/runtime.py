"""Running a service: its background loops, and serving its API with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI


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


def serve(service: Service, app: FastAPI, host: str, port: int) -> None:
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
    uvicorn.run(app, host=host, port=port, log_config=None)
