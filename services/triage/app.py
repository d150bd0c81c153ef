"""Triage's composition root: settings, storage, broker, consumers, scheduler, outbox relay and
the HTTP API are built here and nowhere else. Routes reach what they need through
`triage.deps`, which never imports this module."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys

from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from broker_messages import topology
from broker_messages.events import EVENT_ADAPTER, PupilRemoved, RegisterMark
from fastapi import FastAPI
from servicekit import broker, logs
from servicekit.clock import Clock, clock_from_setting
from servicekit.consumer import BatchConsumer
from servicekit.database import database_reachable, make_engine
from servicekit.housekeeping import Housekeeping
from servicekit.key_admin import key_command, keys_router
from servicekit.keys import KeyStore
from servicekit.limits import BodyLimit
from servicekit.openapi import service_app
from servicekit.outbox import OutboxRelay
from servicekit.runtime import Workers, serve
from servicekit.web import install_keys, operations_router
from sqlalchemy.ext.asyncio import AsyncEngine

from triage import csv_import, deps
from triage.api import router
from triage.attendance_lists import router as attendance_router
from triage.explanations_api import router as explanations_router
from triage.housekeeping import triage_purges
from triage.ingest import Ingestor
from triage.metrics import TriageMetrics
from triage.migrations import upgrade
from triage.models import api_keys, outbox
from triage.parked import router as parked_router
from triage.replies import EVENT_ADAPTER as NOTIFIER_EVENTS
from triage.replies import NotifierMessage, ReplyRecorder
from triage.scheduler import Scheduler
from triage.schools import SchoolContextCache
from triage.settings import TriageSettings
from triage.staff_api import router as staff_router
from triage.timeline import router as timeline_router
from triage.today import router as today_router

log = logging.getLogger(__name__)


class TriageService:
    def __init__(self, settings: TriageSettings, clock: Clock | None = None,
                 run_scheduler: bool = True, engine: AsyncEngine | None = None) -> None:
        """`engine`: the database engine, when not the one `settings.database_url` makes."""
        self.settings = settings
        self.clock = clock or clock_from_setting(settings.clock_offset_seconds)
        self.metrics = TriageMetrics()
        self.engine = engine or make_engine(settings.database_url)
        # Keys read "trk_…", so a key for one service is never tried on the other.
        self.keys = KeyStore(self.engine, api_keys, prefix="trk")
        self.schools = SchoolContextCache()
        self.ingestor = Ingestor(self.engine, self.clock, self.schools,
                                 on_cancelled=self._wake_relay)
        self.housekeeping = Housekeeping("triage", self.engine, self.clock,
                                         functools.partial(triage_purges, settings))
        self._run_scheduler = run_scheduler
        self.workers = Workers()
        self.connection: AbstractRobustConnection | None = None
        self.events_exchange: AbstractExchange | None = None
        self.relay: OutboxRelay | None = None
        self.scheduler: Scheduler | None = None
        self.consumer: BatchConsumer[RegisterMark | PupilRemoved] | None = None
        self.replies = ReplyRecorder(self.engine, self.clock, self.schools,
                                     on_enqueued=self._wake_relay)
        self.reply_consumer: BatchConsumer[NotifierMessage] | None = None

    async def start(self) -> None:
        await upgrade(self.engine)
        self.connection = await broker.connect(self.settings.amqp_url)
        channel = await broker.confirmed_channel(self.connection)
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        queue, dead = await topology.declare_events(channel)
        await topology.declare_requests(channel)
        # The reply consumer gets a channel of its own: delivery tags are per channel, and each
        # consumer acks up to its highest tag (`multiple`), which on a shared channel would ack
        # the other's messages and then close the channel on an unknown tag.
        reply_channel = await broker.confirmed_channel(self.connection)
        await reply_channel.set_qos(prefetch_count=self.settings.prefetch)
        reply_queue, _ = await topology.declare_replies(reply_channel)
        reply_dead = await reply_channel.get_exchange(topology.REQUESTS_DEAD_EXCHANGE)
        self.events_exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
        requests = await channel.get_exchange(topology.REQUESTS_EXCHANGE)
        keys = self.settings.signing_keys()
        if not keys:
            # The notifier refuses unsigned requests: nothing triage decides would be sent.
            log.error("triage.signing.unconfigured: set CONTACT_SIGNING_KEY")
        self.relay = OutboxRelay(self.engine, outbox, requests,
                                 on_published=self._count_published,
                                 sign=keys[0].headers if keys else None)
        self.scheduler = Scheduler(self.engine, self.clock, self.schools, self.relay.wake,
                                   parked_days=self.settings.parked_event_days,
                                   parked_warn_days=self.settings.parked_event_warn_days)
        self.consumer = BatchConsumer(
            name="triage",
            parse=EVENT_ADAPTER.validate_json,
            handle=self._apply_events,
            dead_exchange=dead,
            batch_size=self.settings.batch_size,
            on_dead_letter=lambda reason: self.metrics.rejected.labels(reason).inc(),
        )
        # docs/rules.md "Replies": a parent's reply, relayed by the notifier.
        self.reply_consumer = BatchConsumer(
            name="triage.replies",
            parse=NOTIFIER_EVENTS.validate_json,
            handle=self.replies.apply,
            dead_exchange=reply_dead,
            batch_size=self.settings.batch_size,
            on_dead_letter=lambda reason: self.metrics.rejected.labels(reason).inc(),
        )
        self.workers.spawn(self.consumer.run())
        self.workers.spawn(self.reply_consumer.run())
        self.workers.spawn(self.relay.run())
        if self._run_scheduler:
            self.workers.spawn(self.scheduler.run(self.settings.scheduler_poll_seconds))
            self.workers.spawn(self.housekeeping.run())
        await self.consumer.start(queue)
        await self.reply_consumer.start(reply_queue)
        log.info("triage.started")

    def _count_published(self, routing_key: str) -> None:
        if routing_key == topology.CONTACT_REQUEST_ROUTING_KEY:
            self.metrics.contacts_requested.inc()

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def _apply_events(self, events: list[RegisterMark | PupilRemoved]) -> list[str | None]:
        outcomes = await self.ingestor.apply(events)
        for outcome in outcomes:
            self.metrics.events.labels(outcome.status).inc()
        return [o.reason if o.status == "rejected" else None for o in outcomes]

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.reply_consumer is not None:
            await self.reply_consumer.stop()
        await self.workers.stop()
        await broker.close_quietly(self.connection)
        await self.engine.dispose()

    async def readiness(self) -> dict[str, bool]:
        return {"broker": broker.is_connected(self.connection),
                "database": await database_reachable(self.engine)}


def create_app(service: TriageService) -> FastAPI:
    app = service_app("Absence triage", "1.0.0")
    app.add_middleware(BodyLimit, max_bytes=service.settings.max_body_bytes)
    deps.install(app, service)
    install_keys(app, service.settings.api_token, service.keys, service.clock)
    app.include_router(router)
    app.include_router(timeline_router)
    app.include_router(today_router)
    app.include_router(attendance_router)
    app.include_router(staff_router)
    app.include_router(parked_router)
    app.include_router(explanations_router)
    app.include_router(keys_router)
    app.include_router(operations_router(service.readiness, service.metrics.registry))
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the API and workers; `keys create|list|revoke …` manages API keys and
    `import-csv …` loads a school's CSV files through a running triage's API instead."""
    argv = sys.argv[1:] if argv is None else argv
    settings = TriageSettings()
    logs.configure(settings.log_level)
    if argv[:1] == ["import-csv"]:
        key = settings.api_token.get_secret_value() if settings.api_token else ""
        raise SystemExit(asyncio.run(csv_import.command(
            argv[1:], key, clock_from_setting(settings.clock_offset_seconds))))
    service = TriageService(settings)
    if argv[:1] == ["keys"]:
        raise SystemExit(asyncio.run(_keys(service, argv[1:])))
    serve(service, create_app(service), settings)


async def _keys(service: TriageService, argv: list[str]) -> int:
    try:
        return await key_command("triage", argv, service.keys, service.clock,
                                 lambda: upgrade(service.engine))
    finally:
        await service.engine.dispose()
