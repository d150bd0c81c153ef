"""What triage's HTTP routes need, as FastAPI dependencies.

The composition root (`triage.app`) hands the running service to `install`; routes name the
parts they use (`EngineDep`, `ClockDep`, …). `TriageParts` is all the API layer knows of the
service, so it never imports the root and the root may import it."""

from __future__ import annotations

from typing import Annotated, Protocol

from aio_pika.abc import AbstractExchange
from fastapi import Depends, FastAPI, Request
from servicekit.clock import Clock
from servicekit.keys import Principal, Scope
from servicekit.web import requires
from sqlalchemy.ext.asyncio import AsyncEngine

from triage.ingest import Ingestor
from triage.schools import SchoolContextCache
from triage.settings import TriageSettings


class TriageParts(Protocol):
    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def ingestor(self) -> Ingestor: ...

    @property
    def schools(self) -> SchoolContextCache: ...

    @property
    def settings(self) -> TriageSettings: ...

    @property
    def events_exchange(self) -> AbstractExchange | None:
        """None until the service has connected to the broker."""


def install(app: FastAPI, service: TriageParts) -> None:
    app.state.service = service


def _service(request: Request) -> TriageParts:
    service: TriageParts = request.app.state.service
    return service


ServiceDep = Annotated[TriageParts, Depends(_service)]


def _engine(service: ServiceDep) -> AsyncEngine:
    return service.engine


def _clock(service: ServiceDep) -> Clock:
    return service.clock


def _ingestor(service: ServiceDep) -> Ingestor:
    return service.ingestor


def _schools(service: ServiceDep) -> SchoolContextCache:
    return service.schools


def _parked_days(service: ServiceDep) -> int:
    return service.settings.parked_event_days


EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SchoolsDep = Annotated[SchoolContextCache, Depends(_schools)]
ClockDep = Annotated[Clock, Depends(_clock)]
IngestorDep = Annotated[Ingestor, Depends(_ingestor)]
# TRIAGE_PARKED_EVENT_DAYS: how long a parked event waits for the roster (triage.housekeeping).
ParkedDaysDep = Annotated[int, Depends(_parked_days)]

# The caller, when their key has the scope the route needs (docs/security.md).
SchoolsWriter = Annotated[Principal, Depends(requires(Scope.SCHOOLS_WRITE))]
MarksWriter = Annotated[Principal, Depends(requires(Scope.MARKS_WRITE))]
TasksReader = Annotated[Principal, Depends(requires(Scope.TASKS_READ))]
TasksWriter = Annotated[Principal, Depends(requires(Scope.TASKS_WRITE))]
TimelineReader = Annotated[Principal, Depends(requires(Scope.TIMELINE_READ))]
