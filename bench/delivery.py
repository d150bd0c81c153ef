"""From a decision to the provider: the morning hand-off, end-to-end latency, the notifier's
send rate, the naive baseline, and the check that exactly the right SMS went out."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from broker_messages import topology
from broker_messages.contact import (
    ContactRequest,
    DeliveryWindow,
    PupilRef,
    Recipient,
    School,
)
from notifier.app import NotifierService
from notifier.models import notifications
from notifier.settings import NotifierSettings, TwilioSettings
from pydantic import SecretStr
from servicekit.clock import Clock
from servicekit.runtime import freeze_startup_objects
from sqlalchemy import select
from triage.app import TriageService
from twilio.rest import Client

from bench.generator import Authority, encode, expected_first_day_sms, sibling_groups
from bench.infra import SIGNING_KEY, publish
from bench.throughput import Rate, triage_settings
from tests.fakes.twilio_stub import TwilioStub

SENDER = "+447700900999"
PUBLIC_BASE_URL = "http://notifier.bench"


# The notifier's SMS rate limit (NotifierSettings.sms_per_second); "unlimited" here is a
# limit no morning can reach, raised out of the way of the hand-off and latency runs.
RATE_LIMIT_SETTING = "NOTIFIER_SMS_PER_SECOND"
UNLIMITED = 1_000_000.0


def notifier_settings(amqp_url: str, database_url: str, stub: TwilioStub, workdir: Path,
                      limit: float | None = None) -> NotifierSettings:
    return NotifierSettings(
        amqp_url=amqp_url, database_url=database_url,
        public_base_url=PUBLIC_BASE_URL, outbox_dir=workdir / "outbox",
        contact_signing_key=SecretStr(SIGNING_KEY),
        twilio=TwilioSettings(account_sid=stub.account_sid, auth_token=SecretStr(stub.auth_token),
                              sender=SENDER, api_base=stub.base_url),
        retry_initial_seconds=0.05, dispatch_poll_seconds=0.05,
        sms_per_second=UNLIMITED if limit is None else limit,
    )


# --- the check ------------------------------------------------------------------------------

@dataclass
class SmsCheck:
    expected: int
    sent: int
    problems: list[str] = field(default_factory=list)
    families: int = 0  # sibling groups with two or more absent children
    merged: int = 0  # ... that got one message naming them all (docs/rules.md "Contacting people")

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH: " + "; ".join(self.problems)
        return (f"{self.sent} SMS for {self.expected} expected pupils: {verdict}; siblings "
                f"merged in {self.merged}/{self.families} families")


async def sms_rows(notifier: NotifierService) -> list[Any]:
    async with notifier.engine.connect() as conn:
        return list((await conn.execute(
            select(notifications.c.school_urn, notifications.c.pupil_ids, notifications.c.to,
                   notifications.c.provider_id, notifications.c.status)
            .where(notifications.c.channel == "sms"))).all())


def check_sms(expected: dict[tuple[str, str], str], rows: list[Any],
              stub: TwilioStub) -> SmsCheck:
    """Every expected pupil named in exactly one SMS to their first reachable contact; nothing
    else sent; the provider saw exactly what the notifier recorded as sent."""
    check = SmsCheck(expected=len(expected), sent=len(stub.messages))
    sent_rows = [r for r in rows if r.status == "sent"]
    if len(sent_rows) != len(rows):
        check.problems.append(f"{len(rows) - len(sent_rows)} SMS not sent "
                              f"({Counter(r.status for r in rows if r.status != 'sent')})")
    stub_sids = Counter(m["sid"] for m in stub.messages)
    row_sids = Counter(r.provider_id for r in sent_rows)
    if stub_sids != row_sids:
        check.problems.append(
            f"provider and notifier disagree: {sum((stub_sids - row_sids).values())} at the "
            f"provider only, {sum((row_sids - stub_sids).values())} recorded only")
    named: Counter[tuple[str, str]] = Counter()
    wrong_phone = 0
    for row in sent_rows:
        for pupil_id in row.pupil_ids:
            key = (row.school_urn, pupil_id)
            named[key] += 1
            if key in expected and expected[key] != row.to:
                wrong_phone += 1
    missing = set(expected) - set(named)
    unexpected = set(named) - set(expected)
    twice = [k for k, n in named.items() if n > 1]
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("named in more than one SMS", twice)):
        if items:
            check.problems.append(f"{len(items)} pupils {label} (e.g. {sorted(items)[:3]})")
    if wrong_phone:
        check.problems.append(f"{wrong_phone} SMS to a contact other than the first reachable")
    groups = [g for g in sibling_groups(expected).items() if len(g[1]) > 1]
    check.families = len(groups)
    covering = {(r.school_urn, r.to): set(r.pupil_ids) for r in sent_rows}
    check.merged = sum(1 for key, pupils in groups if covering.get(key) == pupils)
    return check


async def wait_for_sms(stub: TwilioStub, count: int, stall: float = 20.0,
                       extra: float = 1.0) -> None:
    """Until `count` SMS have arrived (then `extra` seconds more, to catch over-sending) or
    nothing has arrived for `stall` seconds."""
    last, last_change = -1, time.monotonic()
    while len(stub.messages) < count and time.monotonic() - last_change < stall:
        if len(stub.messages) != last:
            last, last_change = len(stub.messages), time.monotonic()
        await asyncio.sleep(0.02)
    await asyncio.sleep(extra)


async def settle_dispatcher(notifier: NotifierService, stub: TwilioStub) -> None:
    assert notifier.dispatcher is not None
    await notifier.dispatcher.wait_settled(len(stub.messages), timeout=30)


# --- 4a. the morning hand-off ---------------------------------------------------------------

@dataclass
class Handoff:
    seconds_from_last_mark: float
    sms: int
    check: SmsCheck


async def morning_handoff(triage: TriageService, last_mark_settled: float, amqp_url: str,
                          notifier_db: str, stub: TwilioStub, clock: Clock, workdir: Path,
                          expected: dict[tuple[str, str], str]) -> Handoff:
    """After the burst is in: run the scheduler loop (50 ms poll) and the notifier until every
    first-day contact has reached the provider."""
    assert triage.scheduler is not None
    stub.reset()
    notifier = NotifierService(notifier_settings(amqp_url, notifier_db, stub, workdir), clock)
    freeze_startup_objects()
    await notifier.start()
    try:
        triage.workers.spawn(triage.scheduler.run(0.05))
        await wait_for_sms(stub, len(expected))
        await settle_dispatcher(notifier, stub)
        last = max(stub.arrivals.values(), default=time.time())
        check = check_sms(expected, await sms_rows(notifier), stub)
    finally:
        await notifier.stop()
    return Handoff(last - last_mark_settled, len(stub.messages), check)


# --- 4b. end-to-end latency at a steady rate ------------------------------------------------

@dataclass
class Latency:
    marks: int
    achieved_rate: float
    p50: float
    p95: float
    p99: float
    worst: float
    check: SmsCheck


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


async def end_to_end_latency(amqp_url: str, triage_db: str, notifier_db: str, stub: TwilioStub,
                             clock: Clock, workdir: Path, authority: Authority, count: int,
                             rate: float) -> Latency:
    """Marks published at `rate`/s (no amendments: at `not_before` 00:00 an amendment minutes
    later cannot stop a contact already sent); latency = provider arrival - publish."""
    stub.reset()
    triage = TriageService(triage_settings(amqp_url, triage_db, scheduler_poll_seconds=0.05),
                           clock, run_scheduler=True)
    notifier = NotifierService(notifier_settings(amqp_url, notifier_db, stub, workdir), clock)
    marks = authority.marks[:count]
    bodies = encode(marks)
    published_at: dict[tuple[str, str], float] = {}
    freeze_startup_objects()
    await triage.start()
    await notifier.start()
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
        confirms = []
        started = time.perf_counter()
        for index, (mark, body) in enumerate(zip(marks, bodies, strict=True)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            published_at[(mark["school_urn"], mark["pupil_id"])] = time.time()
            confirms.append(asyncio.ensure_future(exchange.publish(
                aio_pika.Message(body, content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="register.mark")))
        await asyncio.gather(*confirms)
        achieved = count / (time.perf_counter() - started)
        expected = expected_first_day_sms(authority, pupils=set(published_at), amended=False)
        await wait_for_sms(stub, len(expected))
        await settle_dispatcher(notifier, stub)
        rows = await sms_rows(notifier)
        check = check_sms(expected, rows, stub)
    finally:
        await connection.close()
        await notifier.stop()
        await triage.stop()
    latencies = sorted(
        stub.arrivals[row.provider_id]
        - max(published_at[(row.school_urn, p)] for p in row.pupil_ids)
        for row in rows if row.provider_id in stub.arrivals)
    return Latency(count, achieved, _percentile(latencies, 0.50), _percentile(latencies, 0.95),
                   _percentile(latencies, 0.99), max(latencies, default=float("nan")), check)


# --- 5. notifier send rate, and 8. the naive loop ---------------------------------------------

def contact_requests(authority: Authority, expected: dict[tuple[str, str], str],
                     now: dt.datetime, at_any_hour: bool = False) -> list[ContactRequest]:
    """What triage's scheduler sends for each first-day contact (one pupil per request).
    `at_any_hour`: no quiet hours, for processes on the system clock at night."""
    window = DeliveryWindow(quiet_hours="00:00-00:00") if at_any_hour else DeliveryWindow()
    documents = {s["urn"]: s for s in authority.schools}
    records = {(s["urn"], p["id"]): p for s in authority.schools for p in s["pupils"]}
    requests = []
    for (urn, pupil_id), phone in sorted(expected.items()):
        school, record = documents[urn], records[(urn, pupil_id)]
        requests.append(ContactRequest(
            request_id=f"first_day_contact:{urn}:{pupil_id}:{authority.day.isoformat()}",
            rule="first_day_contact",
            school=School(urn=urn, name=school["name"], phone=school["phone"]),
            date=authority.day,
            pupils=(PupilRef(pupil_id=pupil_id, given_name=record["given_name"],
                             family_name=record["family_name"]),),
            family=(Recipient(role="parent", ref=f"{pupil_id}/contact/1", name="Parent",
                              phone=phone, channels=("sms",)),),
            episode_start=authority.day,
            delivery=window,
            requested_at=now,
        ))
    return requests


async def notifier_rate(amqp_url: str, notifier_db: str, stub: TwilioStub, clock: Clock,
                        workdir: Path, requests: list[ContactRequest],
                        limit: float | None) -> tuple[Rate, list[str], list[float]]:
    """Pre-publish the requests, start the notifier, time it to the last SMS at the provider.
    Returns the rate, the problems found (every request's phone texted exactly once) and when
    each SMS reached the provider."""
    stub.reset()
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_requests(channel)
        exchange = await channel.get_exchange(topology.REQUESTS_EXCHANGE)
        published = await publish(exchange, topology.CONTACT_REQUEST_ROUTING_KEY,
                                   [r.model_dump_json(by_alias=True).encode() for r in requests],
                                   signed=True)
    finally:
        await connection.close()
    notifier = NotifierService(notifier_settings(amqp_url, notifier_db, stub, workdir, limit),
                               clock)
    started = time.time()
    freeze_startup_objects()
    await notifier.start()
    try:
        await wait_for_sms(stub, len(requests), extra=0.5)
    finally:
        await notifier.stop()
    seconds = max(stub.arrivals.values(), default=time.time()) - started
    wanted = Counter(r.family[0].phone for r in requests)
    got = Counter(m["to"] for m in stub.messages)
    problems = [] if wanted == got else [
        f"{sum((wanted - got).values())} requests not texted, {sum((got - wanted).values())} extra"]
    arrivals = sorted(stub.arrivals[m["sid"]] for m in stub.messages)
    return Rate(len(requests), seconds, published), problems, arrivals


def steady_rate(arrivals: list[float]) -> float:
    """SMS per second from the first to the last at the provider (start-up left out)."""
    if len(arrivals) < 2 or arrivals[-1] == arrivals[0]:
        return float("inf")
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def busiest_second(arrivals: list[float]) -> int:
    """The most SMS the provider saw within any one second (a sliding window)."""
    most, first = 0, 0
    for last, at in enumerate(arrivals):
        while at - arrivals[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


async def naive_sequential(stub: TwilioStub, messages: list[tuple[str, str]]) -> Rate:
    """The same SMS through the twilio client, one after another, nothing else."""

    def send_all() -> None:
        client = Client(stub.account_sid, stub.auth_token)
        client.api.base_url = stub.base_url
        for to, body in messages:
            client.messages.create(to=to, from_=SENDER, body=body,
                                   status_callback=PUBLIC_BASE_URL + "/twilio/status")

    stub.reset()
    started = time.perf_counter()
    await asyncio.to_thread(send_all)
    seconds = time.perf_counter() - started
    if len(stub.messages) != len(messages):
        raise RuntimeError(f"naive loop: {len(stub.messages)} of {len(messages)} SMS arrived")
    return Rate(len(messages), seconds, seconds)
