"""The notifier's send rate: how fast it can go, whether it reaches and keeps a provider's
limit, and whether replicas share that limit.

Against the instant stub the notifier is compared with a naive sequential `twilio` loop in the
same run. Against a stub that answers in 200 +/- 50 ms (seeded), as real Twilio's 100-300 ms,
only concurrency reaches 100 a second; the same loop is measured there too. Then two and four
`python -m notifier` processes on one PostgreSQL database send under one 100/s limit: the
provider counts per sender, whoever sends."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from broker_messages.contact import ContactRequest
from servicekit.clock import Clock

from bench import delivery, processes
from bench.generator import Authority
from bench.infra import Databases
from bench.report import Report
from tests.fakes.twilio_stub import TwilioStub

LIMITS: tuple[float | None, ...] = (10, 100, None)
# The unlimited run's size at least: a quick morning's few hundred texts end before the rate
# is steady.
UNLIMITED_AT_LEAST = 2_000
NAIVE_SAMPLE = 1_000
SLOW_LATENCY, SLOW_JITTER = 0.2, 0.05
SLOW_LIMIT = 100.0
# The sequential loop manages about 5 a second against the slow stub: a few seconds' worth.
SLOW_NAIVE_SAMPLE = 15
REPLICAS = (2, 4)


def _at_least(requests: list[ContactRequest], count: int) -> list[ContactRequest]:
    """The requests, repeated under new request ids until there are `count`."""
    more = list(requests)
    copy = 1
    while len(more) < count:
        more += [r.model_copy(update={"request_id": f"{r.request_id}:{copy}"})
                 for r in requests[: count - len(more)]]
        copy += 1
    return more


def _texted_once(requests: list[ContactRequest], stub: TwilioStub) -> list[str]:
    wanted = Counter(r.family[0].phone for r in requests)
    got = Counter(m["to"] for m in stub.messages)
    return [] if wanted == got else [
        f"{sum((wanted - got).values())} requests not texted, {sum((got - wanted).values())} extra"]


def _limit_target(report: Report, what: str, limit: float, arrivals: list[float]) -> None:
    steady, busiest = delivery.steady_rate(arrivals), delivery.busiest_second(arrivals)
    # One SMS of slack on the ceiling: grants are spaced exactly, arrivals jitter.
    report.target(f"{what} at {limit:.0f}/s: reaches the limit (first -> last SMS >= 95%) and "
                  "never exceeds it (busiest second <= limit + 1)",
                  f"{steady:,.1f}/s, busiest second {busiest}",
                  steady >= 0.95 * limit and busiest <= limit + 1)


async def run(report: Report, amqp_url: str, databases: Databases, stub: TwilioStub,
              authority: Authority, expected: dict[tuple[str, str], str], clock: Clock,
              workdir: Path, window_seconds: float, seed: int) -> None:
    requests = delivery.contact_requests(authority, expected, clock.now())
    report.notes.append(f"Notifier rate limit: setting `{delivery.RATE_LIMIT_SETTING}`; "
                        f"'unlimited' = {delivery.UNLIMITED:,.0f}/s, also used for the hand-off "
                        "and latency runs.")
    unlimited = 0.0
    for limit in LIMITS:
        batch = (_at_least(requests, UNLIMITED_AT_LEAST) if limit is None
                 else requests[: int(limit * window_seconds)])
        rate, problems, arrivals = await delivery.notifier_rate(
            amqp_url, databases.url(await databases.create()), stub, clock, workdir, batch, limit)
        label = "unlimited" if limit is None else f"limit {limit:.0f}/s"
        steady, busiest = delivery.steady_rate(arrivals), delivery.busiest_second(arrivals)
        report.figure(f"notifier send rate, {label}", f"{rate.per_second:,.0f} SMS/s",
                      note=f"{rate.count:,} requests pre-published; start() -> last SMS at stub; "
                           f"first -> last SMS {steady:,.1f}/s; busiest second {busiest}")
        report.check(f"notifier {label}: every request texted once"
                     + (f" ({'; '.join(problems)})" if problems else ""), not problems)
        if limit is None:
            unlimited = steady
        else:
            _limit_target(report, "notifier", limit, arrivals)
    sample = [(m["to"], m["body"]) for m in stub.messages][:NAIVE_SAMPLE]
    naive = await delivery.naive_sequential(stub, sample)
    report.figure("naive baseline: twilio client, sequential loop", f"{naive.per_second:,.0f} SMS/s",
                  note=f"{naive.count:,} of the same SMS, sync Client, one request at a time")
    report.target("notifier unlimited (first -> last SMS) >= 1x the naive sequential loop",
                  f"x{unlimited / naive.per_second:.2f}", unlimited >= naive.per_second)

    async with TwilioStub(latency=SLOW_LATENCY, jitter=SLOW_JITTER, seed=seed) as slow:
        slow_note = f"stub answers in {SLOW_LATENCY * 1000:.0f} +/- {SLOW_JITTER * 1000:.0f} ms"
        batch = _at_least(requests, int(SLOW_LIMIT * window_seconds))[
            : int(SLOW_LIMIT * window_seconds)]
        rate, problems, arrivals = await delivery.notifier_rate(
            amqp_url, databases.url(await databases.create()), slow, clock, workdir, batch,
            SLOW_LIMIT)
        report.figure(f"notifier send rate, slow provider, limit {SLOW_LIMIT:.0f}/s",
                      f"{rate.per_second:,.0f} SMS/s",
                      note=f"{slow_note}; {rate.count:,} requests; first -> last SMS "
                           f"{delivery.steady_rate(arrivals):,.1f}/s; busiest second "
                           f"{delivery.busiest_second(arrivals)}")
        report.check("notifier, slow provider: every request texted once"
                     + (f" ({'; '.join(problems)})" if problems else ""), not problems)
        _limit_target(report, "notifier against a 200 ms provider", SLOW_LIMIT, arrivals)
        naive = await delivery.naive_sequential(slow, sample[:SLOW_NAIVE_SAMPLE])
        report.figure("naive baseline against the slow provider", f"{naive.per_second:,.1f} SMS/s",
                      note=f"{naive.count} SMS, sync Client, one request at a time; {slow_note}")
        await _replicas(report, amqp_url, databases, slow, authority, expected, workdir)


async def _replicas(report: Report, amqp_url: str, databases: Databases, stub: TwilioStub,
                    authority: Authority, expected: dict[tuple[str, str], str],
                    workdir: Path) -> None:
    # Processes run on the system clock, at any hour.
    requests = _at_least(delivery.contact_requests(authority, expected, dt.datetime.now(dt.UTC),
                                                   at_any_hour=True), int(SLOW_LIMIT * 5))[
        : int(SLOW_LIMIT * 5)]
    bodies = [r.model_dump_json(by_alias=True).encode() for r in requests]
    for replicas in REPLICAS:
        arrivals = await processes.notifier_replicas(amqp_url, databases, stub, bodies,
                                                     replicas, SLOW_LIMIT, workdir)
        report.figure(f"{replicas} notifier replicas sharing {SLOW_LIMIT:.0f}/s, slow provider",
                      f"{delivery.steady_rate(arrivals):,.1f} SMS/s",
                      note=f"`python -m notifier` x{replicas} on one PostgreSQL database, "
                           f"{len(requests)} requests; first -> last SMS; busiest second "
                           f"{delivery.busiest_second(arrivals)}")
        problems = _texted_once(requests, stub)
        report.check(f"{replicas} notifier replicas: every request texted once"
                     + (f" ({'; '.join(problems)})" if problems else ""), not problems)
        _limit_target(report, f"{replicas} notifier replicas together", SLOW_LIMIT, arrivals)
