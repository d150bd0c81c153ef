"""docs/rules.md "Amendments": a contact request triage cancels (a mark re-coded after it was
handed over) sends nothing more: not a text held for quiet hours, not one waiting its turn at
the rate limit, not the next contact of a fallback chain, not a request that arrives after its
cancellation. A send already started may go, and its record says so. Through the real broker
(`contact.cancel`), the real twilio client against the loopback stub and the SMTP sink."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from broker_messages import topology
from broker_messages.contact import ContactRequest, Recipient
from notifier.app import NotifierService
from notifier.models import contact_requests, notifications
from notifier.notification_store import SENT_ANYWAY
from notifier.rate_limit import TokenBucket
from sqlalchemy import select

from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack, family_request, parent

FIRST, SECOND = "+447700900001", "+447700900002"
WAIT = dt.timedelta(minutes=15)  # NotifierSettings.delivery_receipt_wait_seconds default
TUESDAY = dt.date(2026, 11, 24)
REASON = "re-coded after the register closed"
CANCELLED = f"cancelled: {REASON}"


class GatedTimer:
    """Virtual time for a TokenBucket whose waits end only when the test lets them: a claimed
    text can be held in the rate-limit queue for exactly as long as a test needs."""

    def __init__(self, changed: asyncio.Condition | None = None) -> None:
        self.now = 0.0
        self.waiting = 0
        self.gate = asyncio.Semaphore(0)
        self._changed = changed or asyncio.Condition()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        async with self._changed:
            self.waiting += 1
            self._changed.notify_all()
        try:
            await self.gate.acquire()
        finally:
            self.waiting -= 1
        self.now += seconds

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()

    async def wait_for_waiting(self, count: int = 1, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.waiting >= count)


def _gated_sms(service: NotifierService, timer: GatedTimer) -> None:
    """One free token, then each one only when the test releases it."""
    assert service.dispatcher is not None
    service.dispatcher.rate_limits["sms"] = TokenBucket(1.0, timer)


async def _chain(stack: Stack, request_id: str) -> Any:
    async with stack.notifier.engine.connect() as conn:
        return (await conn.execute(select(contact_requests)
                                   .where(contact_requests.c.request_id == request_id))).first()


def _cancelled_count(stack: Stack, rule: str, channel: str) -> float:
    value = stack.notifier.metrics.registry.get_sample_value(
        "notifier_notifications_total", {"rule": rule, "channel": channel, "status": "cancelled"})
    return value or 0.0


def _by_phone(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {r["to"]: (r["status"], r["note"]) for r in rows if r["channel"] != "email"}


async def test_text_held_for_quiet_hours_is_cancelled_and_the_sent_email_stays_sent(
    stack: Stack,
) -> None:
    stack.at(7, 58)
    mum = parent(1, email="mum@example.com", channels=("sms", "email"))
    request = family_request(stack.clock.now(), mum)
    await stack.publish_requests(request)
    await stack.requests_processed()
    await stack.smtp.wait_for(1)  # email waits for nobody; the text is held to 08:00
    await stack.sent(1)

    stack.clock.advance(dt.timedelta(seconds=2))  # 07:58:02
    await stack.publish_cancel(request, reason=REASON)
    await stack.publish_cancel(request, reason="a second copy")  # harmless
    await stack.requests_processed()
    stack.at(8, 0)
    await stack.dispatch_due()
    stack.clock.advance(WAIT * 4)
    await stack.dispatch_due()

    assert stack.twilio.attempts == []
    rows = {n["channel"]: n for n in await stack.notifications()}
    assert (rows["email"]["status"], rows["email"]["note"]) == ("sent", None)
    assert (rows["sms"]["status"], rows["sms"]["note"]) == ("cancelled", CANCELLED)
    assert len(stack.smtp.messages) == 1
    assert (await _chain(stack, request.request_id)).state == "cancelled"
    assert _cancelled_count(stack, "first_day_contact", "sms") == 1


async def test_text_waiting_for_the_rate_limit_is_not_sent_after_the_cancellation(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"sms_per_second": 1}) as stack:
        timer = GatedTimer()
        _gated_sms(stack.notifier, timer)
        now = stack.clock.now()
        first = family_request(now, parent(1, pupil_id="P1"), pupils=(("P1", "Sally"),))
        second = family_request(now, parent(2, pupil_id="P2"), pupils=(("P2", "Tom"),))
        await stack.publish_requests(first)
        await twilio.wait_for_messages(1)  # the bucket's free token
        await stack.publish_requests(second)
        await timer.wait_for_waiting(1)  # claimed, waiting for its token

        await stack.publish_cancel(second, reason=REASON)
        await stack.requests_processed()
        timer.release()
        await stack.sent(2)

        assert [m["to"] for m in twilio.messages] == [FIRST]
        assert len(twilio.attempts) == 1
        assert _by_phone(await stack.notifications()) == {
            FIRST: ("sent", None), SECOND: ("cancelled", CANCELLED)}
        assert _cancelled_count(stack, "first_day_contact", "sms") == 1


async def test_a_retry_after_the_cancellation_is_not_made(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path) as stack:
        timer = GatedTimer()
        _gated_sms(stack.notifier, timer)
        twilio.fail_next(1, 500)
        request = family_request(stack.clock.now(), parent(1))
        await stack.publish_requests(request)
        await timer.wait_for_waiting(1)  # the first attempt failed; the retry waits its turn

        await stack.publish_cancel(request, reason=REASON)
        await stack.requests_processed()
        timer.release()
        await stack.sent(1)

        assert [a["status"] for a in twilio.attempts] == [500]
        (row,) = await stack.notifications()
        assert (row["status"], row["note"]) == ("cancelled", CANCELLED)


async def test_next_contact_due_after_an_undelivered_text_is_never_texted(stack: Stack) -> None:
    stack.at(19, 50)
    request = family_request(stack.clock.now(), parent(1), parent(2))
    await stack.publish_requests(request)
    (first,) = await stack.twilio.wait_for_messages(1)
    await stack.sent(1)
    stack.at(20, 5)
    assert (await stack.status_callback(first["sid"], "undelivered")).status_code == 204
    # The second contact is due, held to the morning by quiet hours.
    assert _by_phone(await stack.notifications()) == {
        FIRST: ("undelivered", None),
        SECOND: ("pending", "held for quiet hours or a non-school day until Tue 24 Nov 08:00")}

    stack.at(20, 6)
    await stack.publish_cancel(request, reason=REASON)
    await stack.requests_processed()
    stack.at(8, 0, day=TUESDAY)
    await stack.dispatch_due()
    stack.clock.advance(WAIT * 3)
    await stack.dispatch_due()

    assert [m["to"] for m in stack.twilio.messages] == [FIRST]
    assert stack.smtp.messages == [], "nobody is told the family is unreachable"
    assert _by_phone(await stack.notifications()) == {
        FIRST: ("undelivered", None), SECOND: ("cancelled", CANCELLED)}
    assert await stack.notifications(rule="family_unreachable") == []
    assert (await _chain(stack, request.request_id)).state == "cancelled"


async def test_chain_waiting_for_a_receipt_stops_for_good(stack: Stack) -> None:
    request = family_request(stack.clock.now(), parent(1), parent(2))
    await stack.publish_requests(request)
    (first,) = await stack.twilio.wait_for_messages(1)
    await stack.sent(1)

    await stack.publish_cancel(request, reason=REASON)
    await stack.requests_processed()
    stack.clock.advance(WAIT)
    await stack.dispatch_due()
    await stack.status_callback(first["sid"], "undelivered")  # a late receipt moves nothing
    stack.clock.advance(WAIT * 3)
    await stack.dispatch_due()

    assert [m["to"] for m in stack.twilio.messages] == [FIRST]
    assert stack.smtp.messages == []
    assert _by_phone(await stack.notifications()) == {FIRST: ("undelivered", None)}


async def test_cancellation_that_arrives_before_its_request_means_nothing_is_sent(
    stack: Stack,
) -> None:
    worker = Recipient(role="social_worker", ref="P1/social_worker", name="A Worker",
                       phone="+447700900200", email="worker@la.example", channels=("sms", "email"))
    mum = parent(1, email="mum@example.com", channels=("sms", "email"))
    request = family_request(stack.clock.now(), mum, parent(2), recipients=(worker,))
    await stack.publish_cancel(request, reason=REASON)
    await stack.requests_processed()
    await stack.publish_requests(request)
    await stack.requests_processed()
    await stack.publish_requests(request)  # redelivered: still nothing
    await stack.requests_processed()
    await stack.dispatch_due()
    stack.clock.advance(WAIT * 3)
    await stack.dispatch_due()

    assert stack.twilio.attempts == [] and stack.smtp.messages == []
    rows = await stack.notifications()
    assert len(rows) == 4
    assert {(r["status"], r["note"]) for r in rows} == {("cancelled", CANCELLED)}
    assert _cancelled_count(stack, "first_day_contact", "sms") == 2  # once each, redelivered
    chain = await _chain(stack, request.request_id)
    assert (chain.state, chain.rule) == ("cancelled", "first_day_contact")
    assert ContactRequest.model_validate_json(chain.payload) == request


async def test_request_without_a_schema_field_is_still_a_contact_request(stack: Stack) -> None:
    body = json.loads(family_request(stack.clock.now(), parent(1)).model_dump_json(by_alias=True))
    del body["schema"]
    await stack.publish_requests(json.dumps(body).encode())
    (text,) = await stack.twilio.wait_for_messages(1)
    assert text["to"] == FIRST


async def test_unreadable_cancellation_is_dead_lettered_with_a_reason(stack: Stack) -> None:
    await stack.publish_command(b'{"schema": "contact.cancel/v1", "request_id": "r1"}',
                                topology.CONTACT_CANCEL_ROUTING_KEY)
    (dead,) = await stack.dead_letters(topology.REQUESTS_DEAD_QUEUE)
    reason = str((dead.headers or {})[topology.REJECTION_REASON_HEADER])
    assert "cancelled_at" in reason and "reason" in reason


# --- two replicas racing a cancellation against their dispatch ---------------------------


class RecordingBucket(TokenBucket):
    """Notes, for each token it grants, whether the cancellation had been acked by then."""

    def __init__(self, timer: GatedTimer, race: Race) -> None:
        super().__init__(1.0, timer)
        self._race = race

    async def acquire(self) -> float:
        granted = await super().acquire()
        async with self._race.changed:
            self._race.grants.append(self._race.cancel_acked)
            self._race.changed.notify_all()
        return granted


class Race:
    """Both replicas' SMS buckets, opened by one gate the test releases token by token."""

    def __init__(self) -> None:
        self.timers: list[GatedTimer] = []
        self.gate = asyncio.Semaphore(0)
        self.grants: list[bool] = []
        self.cancel_acked = False
        self.changed = asyncio.Condition()

    def bucket(self) -> RecordingBucket:
        timer = GatedTimer(self.changed)
        timer.gate = self.gate
        self.timers.append(timer)
        return RecordingBucket(timer, self)

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()

    def reset(self) -> None:
        """A fresh gate: tokens left over from the last round must not open this one."""
        self.gate = asyncio.Semaphore(0)
        for timer in self.timers:
            timer.gate = self.gate
        self.grants.clear()
        self.cancel_acked = False

    async def head_start(self, tokens: int, rows: int) -> None:
        """Let `tokens` sends through, and wait until they have their tokens and the next row
        waits for one (unless none is left)."""
        self.release(tokens)
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: len(self.grants) >= rows or (
                len(self.grants) >= tokens and any(t.waiting for t in self.timers)))


async def _any_progress(waits: list[Any]) -> None:
    """Wait (at most a second) until one of these replicas' counters moves on."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=1.0)
    finally:
        for task in tasks:
            task.cancel()


async def _consumed(stack: Stack, replicas: list[NotifierService]) -> None:
    """Every message published to the notifier so far was settled, by either replica."""
    consumers = [r.consumer for r in replicas if r.consumer is not None]
    async with asyncio.timeout(20):
        while sum(c.settled for c in consumers) < stack._requests_published:
            await _any_progress([c.wait_settled(c.settled + 1, 20) for c in consumers])


async def _settled(replicas: list[NotifierService], request_id: str) -> list[Any]:
    """Wait until no row of the request is pending or claimed; each look follows a settle."""
    dispatchers = [r.dispatcher for r in replicas if r.dispatcher is not None]
    async with asyncio.timeout(20):
        while True:
            async with replicas[0].engine.connect() as conn:
                rows = (await conn.execute(select(notifications).where(
                    notifications.c.request_id == request_id))).all()
            if rows and all(r.status not in ("pending", "sending") for r in rows):
                return rows
            await _any_progress([d.wait_settled(d.settled + 1, 20) for d in dispatchers])


async def test_two_replicas_start_no_send_after_the_cancellation_is_recorded(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    seed = 20261123
    outcomes: dict[str, int] = {"sent": 0, "sent_anyway": 0, "refused": 0, "cancelled": 0}
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path) as stack:
        other = NotifierService(stack.notifier_settings, stack.clock)
        await other.start()
        replicas = [stack.notifier, other]
        try:
            race = Race()
            for replica in replicas:
                assert replica.dispatcher is not None
                replica.dispatcher.rate_limits["sms"] = race.bucket()
            for iteration in range(12):
                rng = random.Random(seed + iteration)
                await _one_race(stack, replicas, race, rng, iteration, outcomes)
        finally:
            await other.stop()
    # The seeds cover both sides of the race: sends under way when the cancellation came, and
    # sends it stopped after their rows were claimed.
    assert outcomes["sent_anyway"] and outcomes["refused"], outcomes


async def _one_race(stack: Stack, replicas: list[NotifierService], race: Race,
                    rng: random.Random, iteration: int, outcomes: dict[str, int]) -> None:
    stack.twilio.reset()
    race.reset()
    size = rng.randint(3, 7)
    workers = tuple(Recipient(role="social_worker", ref=f"R{iteration}/worker/{n}",
                              name="A Worker", phone=f"+4477009{iteration:02d}{n:03d}",
                              channels=("sms",)) for n in range(size))
    request = family_request(stack.clock.now(), recipients=workers, unreachable=(),
                             pupils=((f"R{iteration}", "Sally"),))
    # Twilio holds some answers, so sends are still in flight when the cancellation comes.
    stack.twilio.delay_next(rng.randint(1, size), 0.15)
    await stack.publish_requests(request)
    for replica in replicas:  # either may claim the rows
        assert replica.dispatcher is not None
        replica.dispatcher.wake()
    if iteration % 3 == 0:
        race.release(rng.randint(0, 2))  # the cancellation may even beat the claim
    else:
        await race.head_start(rng.randint(0, size - 1), size)
    racing = [rng.randint(0, 3) for _ in range(rng.randint(0, size))]

    async def racing_grants() -> None:
        for yields in racing:
            for _ in range(yields):
                await asyncio.sleep(0)  # interleave with the cancellation's statements
            race.release()

    racer = asyncio.ensure_future(racing_grants())
    await stack.publish_cancel(request, reason=REASON)
    await _consumed(stack, replicas)
    race.cancel_acked = True
    await racer
    race.release(size)  # whatever still waits may now have its token
    rows = await _settled(replicas, request.request_id)

    texted = [m["to"] for m in stack.twilio.messages]
    assert len(texted) == len(set(texted)), "nobody texted twice"
    granted_before_ack = sum(1 for after in race.grants if not after)
    assert len(texted) <= granted_before_ack, (
        f"seed iteration {iteration}: {len(texted)} sends, {granted_before_ack} tokens "
        "granted before the cancellation was acked: a send started after it")
    for row in rows:
        if row.to in texted:
            assert row.status == "sent", row
            assert row.note in (None, SENT_ANYWAY + CANCELLED), row
            outcomes["sent" if row.note is None else "sent_anyway"] += 1
        else:
            assert (row.status, row.note) == ("cancelled", CANCELLED), row
            outcomes["refused" if row.cancel_requested else "cancelled"] += 1
    chain = await _chain(stack, request.request_id)
    assert chain.state == "cancelled"

