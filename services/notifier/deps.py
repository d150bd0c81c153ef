"""What the notifier's HTTP routes need, as FastAPI dependencies.

The composition root (`notifier.app`) hands the running service to `install`; routes take
`ServiceDep` or the single part they use. `NotifierParts` is all the API layer knows of the
service, so it never imports the root and the root may import it."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Request
from servicekit.clock import Clock
from servicekit.keys import Principal, Scope
from servicekit.web import requires
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.dispatch import Dispatcher
from notifier.email_replies import EmailReplyDesk
from notifier.fallback import FamilyChase
from notifier.metrics import NotifierMetrics
from notifier.replies import ReplyDesk
from notifier.settings import NotifierSettings
from notifier.templates import TemplateLibrary


class NotifierParts(Protocol):
    @property
    def settings(self) -> NotifierSettings: ...

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def metrics(self) -> NotifierMetrics: ...

    @property
    def templates(self) -> TemplateLibrary: ...

    @property
    def chase(self) -> FamilyChase: ...

    @property
    def replies(self) -> ReplyDesk: ...

    @property
    def email_replies(self) -> EmailReplyDesk: ...

    @property
    def dispatcher(self) -> Dispatcher | None:
        """None until the service has started."""


def install(app: FastAPI, service: NotifierParts) -> None:
    app.state.service = service


def _service(request: Request) -> NotifierParts:
    service: NotifierParts = request.app.state.service
    return service


ServiceDep = Annotated[NotifierParts, Depends(_service)]


def _engine(service: ServiceDep) -> AsyncEngine:
    return service.engine


def _templates(service: ServiceDep) -> TemplateLibrary:
    return service.templates


EngineDep = Annotated[AsyncEngine, Depends(_engine)]
TemplatesDep = Annotated[TemplateLibrary, Depends(_templates)]

# The caller, when their key has the scope the route needs (docs/security.md).
NotificationsReader = Annotated[Principal, Depends(requires(Scope.NOTIFICATIONS_READ))]
RepliesReader = Annotated[Principal, Depends(requires(Scope.REPLIES_READ))]
TemplatesReader = Annotated[Principal, Depends(requires(Scope.TEMPLATES_READ))]
