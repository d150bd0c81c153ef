"""Both services running in the test's own event loop against real infrastructure.

Time comes from one FrozenClock; the scheduler is driven by the test (`run_due`), so a test
can say "it is now 09:30" instead of sleeping until then."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aio_pika
import httpx
from broker_messages import topology
from broker_messages.contact import (
    Channel,
    ContactCancelled,
    ContactRequest,
    DeliveryWindow,
    PupilRef,
    Recipient,
    School,
)
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings, SmtpSettings, TwilioSettings
from pydantic import SecretStr
from servicekit.clock import FrozenClock
from servicekit.message_signing import SigningKey
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.settings import TriageSettings
from twilio.request_validator import RequestValidator

from tests.browser import served
from tests.factories import LONDON, MONDAY
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub

API_TOKEN = "test-token-of-sufficient-length"
# Shared by both services, as CONTACT_SIGNING_KEY is in a deployment.
SIGNING_KEY = "test-contact-signing-key-of-sufficient-length"
SENDER = "+447700900999"
PUBLIC_BASE_URL = "http://notifier.test"
# Monday 23 November 2026, 08:00 in London: before registers close.
MONDAY_MORNING = dt.datetime(2026, 11, 23, 8, 0, tzinfo=LONDON)


OFFICER = Recipient(role="attendance_officer", ref="123456/staff/attendance_officer/0",
                    name="R Baish", email="attendance@millbrook.example", channels=("email",))


def parent(priority: int, phone: str | None = None, email: str | None = None, *,
           channels: tuple[Channel, ...] = ("sms",), language: str = "en",
           pupil_id: str = "P1") -> Recipient:
    """A family contact as triage sends it (contract: ref `{pupil}/contact/{priority}`)."""
    return Recipient(role="parent", ref=f"{pupil_id}/contact/{priority}",
                     name=f"Parent {priority}", phone=phone or f"+4477009000{priority:02d}",
                     email=email, language=language, channels=channels)


def family_request(clock_now: dt.datetime, *family: Recipient,
                   pupils: tuple[tuple[str, str], ...] = (("P1", "Sally"),),
                   rule: str = "first_day_contact", day: dt.date = MONDAY,
                   unreachable: tuple[Recipient, ...] = (OFFICER,),
                   recipients: tuple[Recipient, ...] = (), safeguarding: bool = False,
                   school_days: tuple[dt.date, ...] | None = None) -> ContactRequest:
    """A contact request whose `family` is chased in order (docs/rules.md "Contacting people")."""
    days = school_days if school_days is not None else tuple(
        MONDAY + dt.timedelta(days=n) for n in range(15)
        if (MONDAY + dt.timedelta(days=n)).weekday() < 5)
    ids = "+".join(p for p, _ in pupils)
    return ContactRequest(
        request_id=f"{rule}:123456:{ids}:{day.isoformat()}", rule=rule,
        school=School(urn="123456", name="Millbrook Primary School", phone="+441235764822"),
        date=day, episode_start=day,
        pupils=tuple(PupilRef(pupil_id=p, given_name=g, family_name="Smith") for p, g in pupils),
        family=family, unreachable=unreachable, recipients=recipients,
        safeguarding=safeguarding,
        delivery=DeliveryWindow(timezone="Europe/London", quiet_hours="20:00-08:00",
                                school_days=days),
        requested_at=clock_now,
    )


class Stack:
    def __init__(self, *, amqp_url: str, broker: aio_pika.abc.AbstractRobustConnection,
                 database_url: str, twilio: TwilioStub, smtp: SmtpSink, workdir: Path,
                 start: dt.datetime = MONDAY_MORNING,
                 notifier_overrides: dict[str, Any] | None = None,
                 triage_overrides: dict[str, Any] | None = None,
                 clock: FrozenClock | None = None) -> None:
        self.clock = clock or FrozenClock(start)
        self.broker = broker
        self.twilio = twilio
        self.smtp = smtp
        self.outbox_dir = workdir / "outbox"
        self.triage_settings = TriageSettings(
            amqp_url=amqp_url, database_url=database_url,
            **{"api_token": SecretStr(API_TOKEN), "batch_size": 50,
               "contact_signing_key": SecretStr(SIGNING_KEY), **(triage_overrides or {})},
        )
        self.notifier_settings = NotifierSettings(
            database_url=database_url,
            api_token=SecretStr(API_TOKEN), public_base_url=PUBLIC_BASE_URL,
            outbox_dir=self.outbox_dir,
            twilio=TwilioSettings(account_sid=twilio.account_sid,
                                  auth_token=SecretStr(twilio.auth_token),
                                  sender=SENDER, api_base=twilio.base_url),
            smtp=SmtpSettings(host=smtp.host, port=smtp.port, sender="attendance@school.example"),
            **{"amqp_url": amqp_url, "retry_initial_seconds": 0.01, "provider_timeout_seconds": 5,
               "contact_signing_key": SecretStr(SIGNING_KEY),
               **(notifier_overrides or {})},
        )
        self.triage = TriageService(self.triage_settings, self.clock, run_scheduler=False)
        self.notifier = NotifierService(self.notifier_settings, self.clock)
        self.triage_app = triage_app(self.triage)
        self.notifier_app = notifier_app(self.notifier)
        self.triage_api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.triage_app),
            base_url="http://triage.test", headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        self.notifier_api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.notifier_app),
            base_url=PUBLIC_BASE_URL, headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        self._published = 0
        self._requests_published = 0

    async def __aenter__(self) -> Self:
        await self.triage.start()
        await self.notifier.start()
        self._channel = await self.broker.channel(publisher_confirms=True)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._channel.close()
        await self.triage_api.aclose()
        await self.notifier_api.aclose()
        await self.notifier.stop()
        await self.triage.stop()

    @contextlib.asynccontextmanager
    async def served(self) -> AsyncIterator[tuple[str, str]]:
        """Real HTTP base URLs (triage, notifier) for the same apps `triage_api` and
        `notifier_api` call, for a client that talks HTTP as the staff app does in production
        (with API_TOKEN or a key of its own). Webhooks are signed for PUBLIC_BASE_URL, so they
        stay with `twilio_webhook`."""
        async with (served(self.triage_app) as triage_url,
                    served(self.notifier_app) as notifier_url):
            yield triage_url, notifier_url

    # --- acting on the system -------------------------------------------------------------

    async def put_school(self, document: dict[str, Any]) -> httpx.Response:
        return await self.triage_api.put(f"/api/v1/schools/{document['urn']}", json=document)

    async def publish(self, *events: dict[str, Any] | bytes,
                      routing_key: str = "register.mark") -> None:
        """Publish events to the contract's exchange, as an MIS integration would."""
        exchange = await self._channel.get_exchange(topology.EVENTS_EXCHANGE)
        for event in events:
            body = event if isinstance(event, bytes) else json.dumps(event).encode()
            key = routing_key
            if isinstance(event, dict) and event.get("schema") == "pupil.removed/v1":
                key = "pupil.removed"
            await exchange.publish(
                aio_pika.Message(body, content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=key,
            )
            self._published += 1

    async def post_events(self, body: Any) -> httpx.Response:
        """HTTP ingest (docs/contract.md §2); the events it accepts or parks (both are
        published) count towards `processed()`."""
        response = await self.triage_api.post("/api/v1/events", json=body)
        if response.status_code in (202, 422):
            answer = response.json()
            self._published += len(answer.get("accepted", [])) + len(answer.get("parked", []))
        return response

    def published_elsewhere(self, count: int) -> None:
        """Events a client put on the broker through triage's API on its own (the CSV import):
        `processed()` waits for them too."""
        self._published += count

    async def publish_requests(self, *requests: ContactRequest | bytes) -> None:
        """Publish contact requests straight to the notifier's exchange, signed as triage's
        relay signs them."""
        for request in requests:
            body = (request if isinstance(request, bytes)
                    else request.model_dump_json(by_alias=True).encode())
            await self.publish_command(body, topology.CONTACT_REQUEST_ROUTING_KEY)

    async def publish_command(self, body: bytes, routing_key: str, *,
                              signing_key: str | None = SIGNING_KEY,
                              headers: dict[str, Any] | None = None) -> None:
        """Publish one body to the notifier's exchange, signed with `signing_key` (None: not
        signed) and with any extra `headers`. It counts towards `requests_processed()`."""
        exchange = await self._channel.get_exchange(topology.REQUESTS_EXCHANGE)
        signed = SigningKey(signing_key).headers(body) if signing_key else {}
        await exchange.publish(
            aio_pika.Message(body, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                             headers=signed | (headers or {})),
            routing_key=routing_key,
        )
        self._requests_published += 1

    async def publish_cancel(self, request: ContactRequest | str, *,
                             reason: str = "re-coded: absence explained",
                             school_urn: str = "123456",
                             pupil_ids: tuple[str, ...] = ("P1",)) -> ContactCancelled:
        """Publish a ContactCancelled for `request` (or a request id) to the notifier's
        exchange with the `contact.cancel` routing key, signed as triage's relay does. It counts
        towards `requests_processed()`."""
        if isinstance(request, ContactRequest):
            school_urn = request.school.urn
            pupil_ids = tuple(p.pupil_id for p in request.pupils)
            request = request.request_id
        cancel = ContactCancelled(request_id=request, school_urn=school_urn, pupil_ids=pupil_ids,
                                  reason=reason, cancelled_at=self.clock.now())
        await self.publish_command(cancel.model_dump_json(by_alias=True).encode(),
                                   topology.CONTACT_CANCEL_ROUTING_KEY)
        return cancel

    def published_by_triage(self, count: int) -> None:
        """Events triage itself published (an accepted explanation's marks): `processed()`
        waits for them too."""
        self._published += count

    async def notifier_events_processed(self, count: int, timeout: float = 15.0) -> None:
        """Wait until triage has settled `count` messages from the notifier in all (replies,
        unreachable families, texts that answered nothing), relayed by its outbox."""
        assert self.triage.reply_consumer is not None and self.notifier.relay is not None
        await self.notifier.relay.publish_pending()
        await self.triage.reply_consumer.wait_settled(count, timeout)

    async def requests_processed(self, timeout: float = 15.0) -> None:
        """Wait until the notifier has settled (accepted or dead-lettered) every request
        published with `publish_requests`; requests from triage share the same count."""
        assert self.notifier.consumer is not None
        await self.notifier.consumer.wait_settled(self._requests_published, timeout)

    async def processed(self, timeout: float = 15.0) -> None:
        """Wait until triage has settled everything published so far."""
        assert self.triage.consumer is not None
        await self.triage.consumer.wait_settled(self._published, timeout)

    def at(self, hour: int, minute: int = 0, day: dt.date | None = None) -> None:
        """Set the clock to a school-local wall-clock time (today unless `day` is given)."""
        local = self.clock.now().astimezone(LONDON)
        target = dt.datetime.combine(day or local.date(), dt.time(hour, minute), tzinfo=LONDON)
        self.clock.set(target)

    async def run_due(self) -> int:
        """Run the triage scheduler once and hand its requests to the broker."""
        assert self.triage.scheduler is not None and self.triage.relay is not None
        settled = await self.triage.scheduler.run_due()
        await self.triage.relay.publish_pending()
        return settled

    async def handed_over(self, timeout: float = 15.0) -> None:
        """Wait until the notifier has settled everything triage's relay has published so far
        (requests and cancellations), so a dispatch that follows sees them."""
        assert self.triage.relay is not None and self.notifier.consumer is not None
        await self.triage.relay.publish_pending()
        await self.notifier.consumer.wait_settled(
            self.triage.relay.published + self._requests_published, timeout)

    async def sent(self, count: int, timeout: float = 15.0) -> None:
        """Wait until the notifier has settled `count` notifications (sent or failed)."""
        assert self.notifier.dispatcher is not None
        await self.notifier.dispatcher.wait_settled(count, timeout)

    async def notifications(self, **filters: str) -> list[dict[str, Any]]:
        response = await self.notifier_api.get("/api/v1/notifications", params=filters)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def dispatch_due(self) -> int:
        """Run the notifier's dispatcher once at the clock's time (held rows, fallback waits)."""
        assert self.notifier.dispatcher is not None
        return await self.notifier.dispatcher.dispatch_due()

    async def twilio_webhook(self, path: str, params: dict[str, str], *,
                             auth_token: str | None = None) -> httpx.Response:
        """POST a webhook signed as Twilio signs it for PUBLIC_BASE_URL + path (or forged with
        another `auth_token`), through the notifier's ASGI app."""
        signature = RequestValidator(auth_token or self.twilio.auth_token).compute_signature(
            PUBLIC_BASE_URL + path, params)
        return await self.notifier_api.post(path, data=params,
                                            headers={"X-Twilio-Signature": signature})

    async def status_callback(self, sid: str, status: str, *, error_code: int | None = None,
                              auth_token: str | None = None) -> httpx.Response:
        kind = "Call" if sid.startswith("CA") else "Message"
        params = {f"{kind}Sid": sid, f"{kind}Status": status,
                  "AccountSid": self.twilio.account_sid, "ApiVersion": "2010-04-01"}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return await self.twilio_webhook("/twilio/status", params, auth_token=auth_token)

    async def inbound_sms(self, from_: str, body: str, *, sid: str | None = None,
                          auth_token: str | None = None) -> httpx.Response:
        sid = sid or "SM" + uuid.uuid4().hex
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.twilio.account_sid,
                  "From": from_, "To": SENDER, "Body": body, "NumMedia": "0",
                  "ApiVersion": "2010-04-01"}
        return await self.twilio_webhook("/twilio/inbound", params, auth_token=auth_token)

    async def dead_letters(self, queue_name: str = topology.EVENTS_DEAD_QUEUE,
                           expected: int = 1, timeout: float = 10.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Read `expected` messages from a dead-letter queue (acking them)."""
        channel = await self.broker.channel()
        queue = await channel.get_queue(queue_name)
        found = []
        async with queue.iterator(timeout=timeout) as messages:
            async for message in messages:
                await message.ack()
                found.append(message)
                if len(found) >= expected:
                    break
        await channel.close()
        return found
