"""The notifier's composition root: settings, storage, providers, consumer, dispatcher and
the HTTP API are built here and nowhere else. Routes reach what they need through
`notifier.deps`, which never imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import sys

from aio_pika.abc import AbstractRobustConnection
from broker_messages import topology
from broker_messages.contact import ContactCancelled, ContactRequest, NotifierCommand
from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError
from servicekit import broker, logs
from servicekit.clock import Clock, clock_from_setting
from servicekit.consumer import BatchConsumer
from servicekit.database import database_reachable, make_engine
from servicekit.housekeeping import Housekeeping
from servicekit.key_admin import key_command, keys_router
from servicekit.keys import KeyStore
from servicekit.limits import BodyLimit
from servicekit.message_signing import SignatureCheck
from servicekit.openapi import service_app
from servicekit.outbox import OutboxRelay
from servicekit.runtime import Workers, serve
from servicekit.web import install_keys, operations_router

from notifier import deps
from notifier.api import api
from notifier.cancellation import Cancellations
from notifier.dispatch import Dispatcher
from notifier.email_replies import EmailReplyDesk
from notifier.fallback import FamilyChase
from notifier.housekeeping import notifier_purges
from notifier.inbound_email import MAX_INBOUND_EMAIL_BYTES, inbound
from notifier.intake import Intake
from notifier.metrics import NotifierMetrics
from notifier.migrations import upgrade
from notifier.models import api_keys, outbox
from notifier.providers import Provider
from notifier.providers.outbox import OutboxFile
from notifier.providers.smtp import SmtpEmail
from notifier.providers.twilio import TwilioClient, TwilioSms, TwilioVoice
from notifier.rate_limit import LoopTimer, SharedRateLimit, Timer
from notifier.replies import ReplyDesk
from notifier.settings import NotifierSettings
from notifier.templates import TemplateLibrary
from notifier.webhooks import MAX_WEBHOOK_BYTES, webhooks

log = logging.getLogger(__name__)


def build_providers(settings: NotifierSettings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    twilio_settings, smtp = settings.twilio, settings.smtp
    if twilio_settings.account_sid and twilio_settings.auth_token:
        twilio = TwilioClient(
            twilio_settings.account_sid, twilio_settings.auth_token.get_secret_value(),
            twilio_settings.api_base, sender=twilio_settings.sender,
            messaging_service_sid=twilio_settings.messaging_service_sid,
            status_callback=settings.public_base_url.rstrip("/") + "/twilio/status",
            timeout=settings.provider_timeout_seconds,
        )
        providers["sms"] = TwilioSms(twilio)
        providers["voice"] = TwilioVoice(twilio)
    else:
        providers["sms"] = providers["voice"] = OutboxFile(settings.outbox_dir, "Twilio account")
    if smtp.host:
        providers["email"] = SmtpEmail(
            host=smtp.host, port=smtp.port, sender=smtp.sender, username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            starttls=smtp.starttls, timeout=settings.provider_timeout_seconds,
        )
    else:
        providers["email"] = OutboxFile(settings.outbox_dir, "SMTP server")
    return providers


Command = ContactRequest | ContactCancelled
_COMMANDS: TypeAdapter[Command] = TypeAdapter(NotifierCommand)


def parse_command(body: bytes) -> Command:
    """A contact request or a cancellation, told apart by "schema". Requests from before
    cancellations existed may carry no "schema": they are contact requests."""
    try:
        return _COMMANDS.validate_json(body)
    except ValidationError as error:
        if [e["type"] for e in error.errors()] == ["union_tag_not_found"]:
            return ContactRequest.model_validate_json(body)
        raise


# The limits grant exactly `rate` a second, but each request then crosses a thread and the
# network, and the provider counts what arrives: at 100/s that jitter once put 102 texts into
# one of its seconds. Pacing 1% under the configured limit leaves room for it.
PACING = 0.99


class NotifierService:
    def __init__(self, settings: NotifierSettings, clock: Clock | None = None,
                 run_dispatcher: bool = True, timer: Timer | None = None) -> None:
        self.settings = settings
        self.clock = clock or clock_from_setting(settings.clock_offset_seconds)
        # Monotonic time for rate limiting; tests pass a virtual one.
        self.timer = timer or LoopTimer()
        self.metrics = NotifierMetrics()
        self.engine = make_engine(settings.database_url)
        # Keys read "ntk_…", so a key for one service is never tried on the other.
        self.keys = KeyStore(self.engine, api_keys, prefix="ntk")
        self.templates = TemplateLibrary(
            settings.templates_dir, str(settings.staff_url) if settings.staff_url else None)
        self.intake = Intake(self.engine, self.clock, self.templates, self.metrics)
        self.cancellations = Cancellations(self.engine, self.clock, self.metrics,
                                           self.templates)
        self.chase = FamilyChase(self.engine, self.clock, self.templates,
                                 dt.timedelta(seconds=settings.delivery_receipt_wait_seconds),
                                 on_published=self._outbox_written)
        self.replies = ReplyDesk(self.engine, self.clock,
                                 dt.timedelta(days=settings.reply_match_days),
                                 on_published=self._outbox_written)
        self.email_replies = EmailReplyDesk(self.engine, self.clock, settings.reply_domain,
                                            on_published=self._outbox_written)
        self.housekeeping = Housekeeping("notifier", self.engine, self.clock,
                                         functools.partial(notifier_purges, settings))
        self.relay: OutboxRelay | None = None
        self._run_dispatcher = run_dispatcher
        self.workers = Workers()
        self.connection: AbstractRobustConnection | None = None
        self.providers: dict[str, Provider] = {}
        self.dispatcher: Dispatcher | None = None
        self.consumer: BatchConsumer[Command] | None = None

    async def start(self) -> None:
        await upgrade(self.engine)
        self.providers = build_providers(self.settings)
        self.dispatcher = Dispatcher(
            self.engine, self.clock, self.providers, self.metrics,
            attempts=self.settings.send_attempts,
            initial_wait=self.settings.retry_initial_seconds,
            max_wait=self.settings.retry_max_seconds,
            claim_expiry=dt.timedelta(seconds=self.settings.claim_expiry_seconds),
            chase=self.chase,
            # Shared by every replica on this database (notifier.rate_limit).
            rate_limits={
                "sms": SharedRateLimit(self.engine, "sms",
                                       self.settings.sms_per_second * PACING, self.timer),
                "voice": SharedRateLimit(self.engine, "voice",
                                         self.settings.calls_per_second * PACING, self.timer),
            },
            concurrency=self.settings.send_concurrency,
            reply_domain=self.settings.reply_domain,
        )
        self.connection = await broker.connect(self.settings.amqp_url)
        channel = await broker.confirmed_channel(self.connection)
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        # docs/security.md "Broker": only what triage signed is sent.
        signatures = SignatureCheck(self.settings.signing_keys())
        if not signatures.configured:
            log.error("notifier.signing.unconfigured: every contact request will be refused "
                      "until CONTACT_SIGNING_KEY is set")
        queue, dead = await topology.declare_requests(channel)
        _, replies_exchange = await topology.declare_replies(channel)
        self.relay = OutboxRelay(self.engine, outbox, replies_exchange)
        self.workers.spawn(self.relay.run())
        self.consumer = BatchConsumer(
            name="notifier",
            parse=parse_command,
            handle=self._accept,
            dead_exchange=dead,
            batch_size=self.settings.prefetch,
            on_dead_letter=lambda reason: self.metrics.rejected.labels(reason).inc(),
            verify=signatures.refusal,
        )
        self.workers.spawn(self.consumer.run())
        if self._run_dispatcher:
            self.workers.spawn(self.dispatcher.run(self.settings.dispatch_poll_seconds))
            self.workers.spawn(self.housekeeping.run())
        await self.consumer.start(queue)
        log.info("notifier.started")

    async def _accept(self, commands: list[Command]) -> list[str | None]:
        """Requests first, then cancellations: a cancellation is final whichever came first,
        and one in the same batch as its request still finds it."""
        verdicts: list[str | None] = [None] * len(commands)
        requests = [(n, c) for n, c in enumerate(commands) if isinstance(c, ContactRequest)]
        cancels = [(n, c) for n, c in enumerate(commands) if isinstance(c, ContactCancelled)]
        if requests:
            for (n, _), verdict in zip(requests, await self.intake.accept(
                    [request for _, request in requests]), strict=True):
                verdicts[n] = verdict
                self.metrics.requests.labels("accepted" if verdict is None else "rejected").inc()
        if cancels:
            for (n, _), verdict in zip(cancels, await self.cancellations.apply(
                    [cancel for _, cancel in cancels]), strict=True):
                verdicts[n] = verdict
                self.metrics.requests.labels("cancelled" if verdict is None else "rejected").inc()
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return verdicts

    def _outbox_written(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        await self.workers.stop()
        for provider in {id(p): p for p in self.providers.values()}.values():
            with contextlib.suppress(Exception):
                await provider.close()
        await broker.close_quietly(self.connection)
        await self.engine.dispose()

    async def readiness(self) -> dict[str, bool]:
        return {"broker": broker.is_connected(self.connection),
                "database": await database_reachable(self.engine)}


def create_app(service: NotifierService) -> FastAPI:
    app = service_app("Absence notifier", "1.0.0")
    app.add_middleware(BodyLimit, max_bytes=service.settings.max_body_bytes,
                       by_prefix={webhooks.prefix: MAX_WEBHOOK_BYTES,
                                  inbound.prefix: MAX_INBOUND_EMAIL_BYTES})
    deps.install(app, service)
    install_keys(app, service.settings.api_token, service.keys, service.clock)
    app.include_router(api)
    app.include_router(webhooks)
    app.include_router(inbound)
    app.include_router(keys_router)
    app.include_router(operations_router(service.readiness, service.metrics.registry))
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the API and workers; `keys create|list|revoke …` manages API keys instead."""
    argv = sys.argv[1:] if argv is None else argv
    settings = NotifierSettings()
    logs.configure(settings.log_level)
    service = NotifierService(settings)
    if argv[:1] == ["keys"]:
        raise SystemExit(asyncio.run(_keys(service, argv[1:])))
    serve(service, create_app(service), settings)


async def _keys(service: NotifierService, argv: list[str]) -> int:
    try:
        return await key_command("notifier", argv, service.keys, service.clock,
                                 lambda: upgrade(service.engine))
    finally:
        await service.engine.dispose()
