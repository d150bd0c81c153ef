"""Running a service: its background loops, and serving its API with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
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


def serve(service: Service, app: FastAPI, host: str, port: int) -> None:
    """Start the service with the API and stop it when uvicorn shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host=host, port=port, log_config=None)
