"""The staff web app's process: settings, its own database, the two services' clients, and
the pages (docs/staff.md)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from servicekit import logs
from servicekit.clock import Clock, clock_from_setting
from servicekit.database import make_engine
from servicekit.limits import BodyLimit
from servicekit.migrations import upgrade_to_head
from servicekit.runtime import server_config
from sqlalchemy.ext.asyncio import AsyncEngine

from staff.accounts import Accounts
from staff.backend import Backend, Service
from staff.context import StaffApp
from staff.pages import install_error_pages, router
from staff.sessions import Sessions
from staff.settings import StaffSettings
from staff.views import Views

log = logging.getLogger(__name__)
HERE = Path(__file__).parent

# Pages may load only what this app serves (htmx, the style sheet): no inline script, no
# third party, never framed (docs/security.md "The staff web app").
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def build(settings: StaffSettings, *, clock: Clock | None = None,
          engine: AsyncEngine | None = None,
          transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> StaffApp:
    """`transports` lets a benchmark call the services in-process; tests and deployments
    call them over HTTP."""
    engine = engine or make_engine(settings.database_url)
    transports = transports or {}
    backend = Backend(
        Service("triage", settings.triage_url, settings.service_key("triage"),
                transports.get("triage")),
        Service("notifier", settings.notifier_url, settings.service_key("notifier"),
                transports.get("notifier")))
    return StaffApp(
        settings=settings, clock=clock or clock_from_setting(settings.clock_offset_seconds),
        engine=engine,
        accounts=Accounts(engine, max_failures=settings.max_failed_logins,
                          lockout=dt.timedelta(minutes=settings.lockout_minutes)),
        sessions=Sessions(engine, lifetime=dt.timedelta(hours=settings.session_hours),
                          idle=dt.timedelta(minutes=settings.idle_minutes)),
        backend=backend, views=Views(engine))


async def migrate(engine: AsyncEngine) -> None:
    await upgrade_to_head(engine, HERE / "migrations", "staff_alembic_version")


def create_app(staff: StaffApp) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await migrate(staff.engine)
        try:
            yield
        finally:
            await staff.backend.close()

    app = FastAPI(title="Absence follow-up: staff", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.staff = staff
    app.add_middleware(BodyLimit, max_bytes=staff.settings.max_body_bytes)

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith("/static/"):
            # Pupils' records are not kept in browser or proxy caches.
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    install_error_pages(app)
    return app


def main() -> None:
    import uvicorn

    settings = StaffSettings()
    logs.configure(settings.log_level)
    app = create_app(build(settings))
    log.info("staff web app listening on %s:%s", settings.host, settings.port)
    uvicorn.Server(server_config(app, settings)).run()
