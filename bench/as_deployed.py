"""bench "as deployed" (`python -m bench --only deployed [--quick]`): one morning from the
first mark published to the last first-day text at the provider, with both services running
as an operator runs them, on SQLite and on PostgreSQL.

The in-process figures (bench/__main__.py) time each stage alone: triage from a full queue,
the notifier from a full queue, the hand-off after the last mark. A school sees none of those;
it sees marks going in and texts coming out while both services work at once, each in its own
process with the settings it ships with. This entry measures exactly that:

- `python -m triage` and `python -m notifier` are started from a scratch working directory
  (bench/processes.py), every setting at its default except what a deployment must supply
  (broker, signing key, Twilio account pointed at the loopback stub, public URL) and the
  provider limit, lifted (`NOTIFIER_SMS_PER_SECOND`): the limit is Twilio's to impose, not
  what is being measured. On SQLite both use their default database files; on PostgreSQL each
  gets a database of its own.
- Both clocks are moved (`CLOCK_OFFSET_SECONDS`) to a Monday just after registers close, so
  every first-day contact is due the moment its mark is decided. The rosters are stored
  before the services start, as a school's MIS upload does the evening before.
- Once both services consume, the whole morning's AM marks are published with confirms, and
  the clock runs from the first publish to the last expected text accepted by the stub.
  Amendments are left out: with contacts due at once, a re-code minutes later cannot stop a
  text already sent (the hand-off run in bench/__main__.py covers amendments).

The ratio is against a bare consume-and-ack of the same bodies on the same broker in the same
run (bench.throughput.bare_consume): what any consumer of these messages reaches at most.
Every run is checked: exactly the expected first-day texts (bench.generator), each pupil named
once, to the first reachable contact, and nothing dead-lettered on either queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from broker_messages import topology
from notifier.models import notifications
from servicekit.database import make_engine
from sqlalchemy import select
from triage.settings import TriageSettings

from bench import processes, rosters
from bench.delivery import (
    PUBLIC_BASE_URL,
    RATE_LIMIT_SETTING,
    SENDER,
    UNLIMITED,
    SmsCheck,
    check_sms,
    wait_for_sms,
)
from bench.generator import (
    LONDON,
    Authority,
    encode,
    expected_first_day_sms,
    generate,
    sibling_groups,
)
from bench.infra import Databases, free_port, publish, queue_state
from bench.report import Report
from bench.throughput import bare_consume
from tests.fakes.twilio_stub import TwilioStub

SEED = 20261123
# (schools, pupils): the morning at full size; quick keeps `bench --quick` short.
SIZES = {"full": (20, 30_000), "quick": (2, 3_000)}
MONDAY = dt.date(2026, 11, 23)
REGISTERS_CLOSED = dt.datetime(2026, 11, 23, 9, 25, tzinfo=LONDON)
POLICY = {"first_day_contact": {"not_before": "00:00", "channels": ["sms"]}}
TARGET = 0.5  # of the bare consume-and-ack rate
BARE_RUNS = 3
READY_SECONDS = 60.0

@dataclass
class Morning:
    seconds: float
    # Of `seconds`, how long the publishing itself took: the harness publishes from this
    # process on the same cores as both services, so no service can finish before it does.
    publishing: float
    marks: int
    sms: int
    check: SmsCheck
    dead: int

    @property
    def per_second(self) -> float:
        return self.marks / self.seconds


def authority(mode: str) -> Authority:
    schools, pupils = SIZES[mode]
    return generate(seed=SEED, schools=schools, pupils=pupils, day=MONDAY,
                    recorded_from=REGISTERS_CLOSED - dt.timedelta(minutes=45), policy=POLICY)


def _env(amqp_url: str, stub: TwilioStub) -> dict[str, str]:
    """What a deployment must supply, the lifted provider limit, and nothing else."""
    offset = (REGISTERS_CLOSED - dt.datetime.now(dt.UTC)).total_seconds()
    return processes.base_env(amqp_url) | {
        "CLOCK_OFFSET_SECONDS": f"{offset:.3f}",
        "TRIAGE_PORT": str(free_port()), "NOTIFIER_PORT": str(free_port()),
        "TWILIO_ACCOUNT_SID": stub.account_sid, "TWILIO_AUTH_TOKEN": stub.auth_token,
        "TWILIO_FROM": SENDER, "TWILIO_API_BASE": stub.base_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        RATE_LIMIT_SETTING: str(UNLIMITED),
    }


def _py_spy(spy: str | None, workdir: Path, name: str) -> tuple[str, ...]:
    if spy is None:
        return ()
    return (spy, "record", "--format", "raw", "--rate", "250",
            "-o", str(workdir / f"{name}.raw"), "--")


async def _consumers_attached(connection: aio_pika.abc.AbstractConnection,
                              spawned: list[Any], workdir: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    for queue in (topology.TRIAGE_QUEUE, topology.NOTIFIER_QUEUE):
        while not (await queue_state(connection, queue))[1]:
            processes.alive(spawned, workdir)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no consumer on {queue} after {READY_SECONDS:.0f} s")
            await asyncio.sleep(0.05)


async def _dead_letters(connection: aio_pika.abc.AbstractConnection) -> int:
    return sum([(await queue_state(connection, queue))[0]
                for queue in (topology.EVENTS_DEAD_QUEUE, topology.REQUESTS_DEAD_QUEUE)])


async def _sms_rows(database_url: str) -> list[Any]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(
                select(notifications.c.school_urn, notifications.c.pupil_ids, notifications.c.to,
                       notifications.c.provider_id, notifications.c.status)
                .where(notifications.c.channel == "sms"))).all())
    finally:
        await engine.dispose()


async def morning(amqp_url: str, stub: TwilioStub, workdir: Path, urls: dict[str, str],
                  notifier_url: str, morning_of: Authority, spy: str | None = None
                  ) -> Morning:
    """Start both services (rosters already stored), publish every AM mark, time publish
    start -> last expected text at the stub, then check what was sent.

    `urls`: the database settings to pass (none on SQLite: the defaults); `notifier_url`
    where the notifier's rows are read back from; `spy`: py-spy's path, to record each
    service's samples into `workdir`/<service>.raw."""
    expected = expected_first_day_sms(morning_of, amended=False)
    bodies = encode(morning_of.marks)
    stub.reset()
    env = _env(amqp_url, stub) | urls
    connection = await aio_pika.connect_robust(amqp_url)
    spawned = []
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_events(channel)
        await topology.declare_requests(channel)
        spawned = [processes.spawn(name, env, workdir, name, _py_spy(spy, workdir, name))
                   for name in ("triage", "notifier")]
        await _consumers_attached(connection, spawned, workdir)
        exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
        started = time.time()
        publishing = await publish(exchange, "register.mark", bodies)
        await wait_for_sms(stub, len(sibling_groups(expected)), extra=0)
        processes.alive(spawned, workdir)
        last = max(stub.arrivals.values(), default=time.time())
        await asyncio.sleep(1.0)  # anything sent twice or unexpected arrives meanwhile
        dead = await _dead_letters(connection)
    finally:
        processes.stop(spawned, interrupt=spy is not None)
        await connection.close()
    check = check_sms(expected, await _sms_rows(notifier_url), stub)
    return Morning(last - started, publishing, len(bodies), len(stub.messages), check, dead)


async def sqlite_urls(workdir: Path, morning_of: Authority) -> tuple[dict[str, str], str]:
    """The services' default database files, under their scratch working directory."""
    (workdir / "var").mkdir(exist_ok=True)
    await rosters.load(f"sqlite+aiosqlite:///{workdir}/var/triage.db", morning_of,
                       REGISTERS_CLOSED)
    return {}, f"sqlite+aiosqlite:///{workdir}/var/notifier.db"


async def postgres_urls(databases: Databases, morning_of: Authority
                        ) -> tuple[dict[str, str], str]:
    triage = databases.url(await databases.create())
    notifier = databases.url(await databases.create())
    await rosters.load(triage, morning_of, REGISTERS_CLOSED)
    return {"TRIAGE_DATABASE_URL": triage, "NOTIFIER_DATABASE_URL": notifier}, notifier


async def run(mode: str, report: Report, amqp_url: str, workdir: Path) -> None:
    morning_of = authority(mode)
    bodies = encode(morning_of.marks)
    expected = expected_first_day_sms(morning_of, amended=False)
    report.notes.append(
        f"Morning: {len(morning_of.schools)} schools, {morning_of.pupil_count:,} pupils, "
        f"{len(bodies):,} AM marks (amendments left out), {len(expected):,} first-day SMS "
        f"expected (seed {SEED}); services' clocks at {REGISTERS_CLOSED:%A %H:%M} London "
        f"(`CLOCK_OFFSET_SECONDS`), `{RATE_LIMIT_SETTING}`={UNLIMITED:,.0f}, every other "
        "setting at its default.")
    prefetch = TriageSettings.model_fields["prefetch"].default
    runs = sorted([await bare_consume(amqp_url, bodies, prefetch) for _ in range(BARE_RUNS)],
                  key=lambda rate: rate.per_second)
    ceiling = runs[len(runs) // 2].per_second
    report.figure("bare aio-pika consume-and-ack of the same marks (ceiling)",
                  f"{ceiling:,.0f} msg/s", "100%",
                  f"median of {len(runs)} runs ({', '.join(f'{r.per_second:,.0f}' for r in runs)})"
                  f"; quorum queue, prefetch {prefetch}")
    databases = Databases()
    try:
        async with TwilioStub() as stub:
            for name in ("SQLite", "PostgreSQL"):
                scratch = workdir / f"deployed-{name.lower()}"
                scratch.mkdir()
                urls, notifier_url = (await sqlite_urls(scratch, morning_of) if name == "SQLite"
                                      else await postgres_urls(databases, morning_of))
                result = await morning(amqp_url, stub, scratch, urls, notifier_url, morning_of)
                ratio = result.per_second / ceiling
                report.figure(f"as deployed on {name}: first mark published -> last text at "
                              "the provider", f"{result.per_second:,.0f} marks/s",
                              f"{100 * ratio:.0f}%",
                              f"{result.marks:,} marks, {result.sms:,} SMS in "
                              f"{result.seconds:.1f} s ({result.sms / result.seconds:,.0f} SMS/s); "
                              f"the publishing itself took {result.publishing:.1f} s "
                              f"({result.marks / result.publishing:,.0f} marks/s)")
                report.target(f"as deployed on {name} >= {TARGET:.1f}x bare consume-and-ack",
                              f"{ratio:.2f}x", ratio >= TARGET)
                report.check(f"as deployed on {name}: " + result.check.summary(),
                             result.check.ok)
                report.check(f"as deployed on {name}: nothing dead-lettered ({result.dead})",
                             result.dead == 0)
                # Not a failure of the run: with the scheduler polling while marks still
                # arrive, two siblings' marks can fall either side of a poll and be texted
                # separately, each child named once (docs/rules.md "Siblings").
                report.target(f"as deployed on {name}: absent siblings sharing a contact get "
                              "one message", f"{result.check.merged}/{result.check.families} "
                              "families merged",
                              result.check.merged == result.check.families)
    finally:
        await databases.drop_all()
