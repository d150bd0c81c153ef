"""A school morning through a three-node RabbitMQ cluster while a node fails.

The services are given every node's address (`AMQP_URL`, comma-separated) and fail over
between them (servicekit.broker.FailoverConnection); the quorum queues keep a replica on each
node. Each test kills or freezes the node leading triage's queue, which is also the node
everything is connected to (the first address, and quorum queues are led from the node that
declared them), and checks that every mark reaches triage and every expected text reaches
the Twilio stub exactly once. The time without consumption and the recovery times are printed
and written to `cluster-figures.json` in pytest's base temporary directory.

Why SIGSTOP for the partition: it cuts a node off from its peers and its clients alike, as a
network partition does (open sockets, no answers), and needs neither privileges nor a
firewall tool (blocking ports takes iptables or nft and root, which test machines often lack).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from broker_messages import topology
from notifier.app import NotifierService
from notifier.models import notifications
from servicekit import broker
from sqlalchemy import select
from triage.app import TriageService
from triage.models import received_events

from tests.factories import LONDON, contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.rabbit_cluster import Node, RabbitCluster
from tests.stack import Stack

pytestmark = pytest.mark.cluster

SEED = 19
PUPILS = 600
ABSENT = 60
EXPLAINED = 15
# Triage's smallest prefetch, so most of the register still waits on the broker when the
# node fails rather than in the consumer's buffer.
PREFETCH = 100
# Short heartbeats, so a client notices a frozen node within seconds (three missed beats)
# rather than minutes; a deployment on a cluster sets the same on each address.
CLIENT_QUERY = "heartbeat=1"
FIRST_REGISTER = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
REGISTERS_IN = dt.datetime(2026, 11, 23, 9, 15, tzinfo=LONDON)


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"))
    try:
        cluster.start()
        record(tmp_path_factory, "cluster", {"startup_seconds": round(cluster.startup_seconds, 1)})
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def vhost(rabbit_cluster: RabbitCluster) -> str:
    name = f"absence-{uuid.uuid4().hex[:8]}"
    rabbit_cluster.add_vhost(name)
    return name


@pytest.fixture
async def cluster_connection(rabbit_cluster: RabbitCluster,
                             vhost: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """The test's own connection (it publishes the registers), failing over as the services'."""
    connection = await broker.connect(rabbit_cluster.urls(vhost, CLIENT_QUERY))
    yield connection
    await broker.close_quietly(connection)


def record(factory: pytest.TempPathFactory, name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}: {json.dumps(figures)}")
    path = factory.getbasetemp() / "cluster-figures.json"
    everything = json.loads(path.read_text()) if path.exists() else {}
    everything[name] = figures
    path.write_text(json.dumps(everything, indent=2) + "\n")


def _phone(n: int) -> str:
    return f"+4477009{n:05d}"


class Morning:
    """A seeded register: every pupil's AM mark, a few absences explained ten minutes on."""

    def __init__(self) -> None:
        rng = random.Random(SEED)
        self.absent = set(rng.sample(range(PUPILS), ABSENT))
        explained = set(rng.sample(sorted(self.absent), EXPLAINED))
        self.roster = school([
            pupil(f"P{n:03d}", f"Child{n}", contacts=[contact(1, phone=_phone(n), email=None)])
            for n in range(PUPILS)])

        def event_id() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128)))

        self.marks = [mark(f"P{n:03d}", "N" if n in self.absent else "/",
                           recorded=FIRST_REGISTER, event_id=event_id())
                      for n in range(PUPILS)]
        self.marks += [mark(f"P{n:03d}", "I", recorded=FIRST_REGISTER + dt.timedelta(minutes=10),
                            event_id=event_id()) for n in sorted(explained)]
        rng.shuffle(self.marks)
        self.expected_texts = sorted(_phone(n) for n in self.absent - explained)


async def publish_marks(connection: aio_pika.abc.AbstractRobustConnection,
                        marks: list[dict[str, Any]]) -> None:
    """Every mark on the broker, each confirmed, before triage reads any."""
    channel = await connection.channel(publisher_confirms=True)
    await topology.declare_events(channel)
    exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
    for event in marks:
        await exchange.publish(broker.persistent_message(json.dumps(event).encode()),
                               routing_key="register.mark")
    await channel.close()


class ConsumptionLog:
    """When triage's consumer settled messages: awaited, one entry per step forward."""

    def __init__(self, service: TriageService) -> None:
        assert service.consumer is not None
        self.consumer = service.consumer
        self.times: list[float] = []
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            await self.consumer.wait_settled(self.consumer.settled + 1, timeout=3600)
            self.times.append(time.monotonic())

    def longest_pause_after(self, moment: float) -> float:
        """The longest stretch without a settled message from `moment` on."""
        after = [moment, *(t for t in self.times if t > moment)]
        return max((b - a for a, b in itertools.pairwise(after)), default=0.0)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def recorded_event_ids(service: TriageService) -> set[str]:
    async with service.engine.connect() as conn:
        return set((await conn.execute(select(received_events.c.event_id))).scalars())


async def every_mark_recorded(service: TriageService, marks: list[dict[str, Any]],
                              timeout: float = 60.0, *, replicas: Sequence[TriageService] = ()
                              ) -> None:
    """Wait, step by settled step, until triage has recorded every mark (a redelivered
    duplicate also counts as settled, so the count alone does not say). With replicas, a
    step is any replica settling a batch: the last marks may all go to one of them."""
    consumers = [s.consumer for s in (service, *replicas) if s.consumer is not None]
    assert len(consumers) == 1 + len(replicas)
    wanted = {m["event_id"] for m in marks}
    async with asyncio.timeout(timeout):
        while True:
            # Counted before the read: a batch settled while the read runs ends the wait at
            # once, where counting after it would wait for a batch that never comes.
            counts = [c.settled for c in consumers]
            if wanted <= await recorded_event_ids(service):
                return
            steps = [asyncio.ensure_future(c.wait_settled(count + 1, timeout))
                     for c, count in zip(consumers, counts, strict=True)]
            try:
                await asyncio.wait(steps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for step in steps:
                    step.cancel()


async def every_text_recorded_as_sent(service: NotifierService, expected: int) -> None:
    """Twilio has them; wait for the notifiers (one or two) to record their answers."""
    async with asyncio.timeout(30):
        while True:
            async with service.engine.connect() as conn:
                statuses = (await conn.execute(select(notifications.c.status))).scalars().all()
            if len(statuses) == expected and set(statuses) == {"sent"}:
                return
            await asyncio.sleep(0.05)


def assert_texted_exactly(twilio: TwilioStub, expected: list[str]) -> None:
    sent = Counter(m["to"] for m in twilio.messages)
    assert {to: n for to, n in sent.items() if n > 1} == {}, "nobody texted twice"
    assert sorted(sent) == expected, "every absent pupil's parent texted"


def assert_replicated_everywhere(cluster: RabbitCluster, vhost: str) -> str:
    """Triage's queue has a member on every node; returns the node leading it."""
    leader, members = cluster.queue_placement(vhost, topology.TRIAGE_QUEUE)
    assert members == sorted(n.name for n in cluster.nodes)
    return leader


async def _morning_through_a_fault(
    cluster: RabbitCluster, vhost: str, connection: aio_pika.abc.AbstractRobustConnection,
    twilio: TwilioStub, smtp: SmtpSink, workdir: Path,
    fault: Callable[[Node], None], heal: Callable[[Node], None],
) -> dict[str, Any]:
    morning = Morning()
    urls = cluster.urls(vhost, CLIENT_QUERY)
    database_url = f"sqlite+aiosqlite:///{workdir}/state.db"
    # The roster first, then the whole register waiting on the broker, so the fault lands
    # while triage is working through it.
    async with Stack(amqp_url=urls, broker=connection, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=workdir, start=REGISTERS_IN,
                     triage_overrides={"prefetch": PREFETCH}) as stack:
        assert (await stack.put_school(morning.roster)).status_code == 200
    await publish_marks(connection, morning.marks)
    victim = cluster.node_named(assert_replicated_everywhere(cluster, vhost))

    async with Stack(amqp_url=urls, broker=connection, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=workdir, start=REGISTERS_IN,
                     triage_overrides={"prefetch": PREFETCH}) as stack:
        assert stack.triage.consumer is not None
        consumption = ConsumptionLog(stack.triage)
        try:
            await stack.triage.consumer.wait_settled(len(morning.marks) // 4, timeout=30)
            fault_at = time.monotonic()
            fault(victim)
            await every_mark_recorded(stack.triage, morning.marks)
            without_consumption = consumption.longest_pause_after(fault_at)
            all_marks_after = time.monotonic() - fault_at
        finally:
            await consumption.stop()
        heal_began = time.monotonic()
        heal(victim)
        healed_after = time.monotonic() - heal_began
        new_leader = assert_replicated_everywhere(cluster, vhost)

        stack.at(9, 30)
        assert stack.triage.scheduler is not None and stack.triage.relay is not None
        await stack.triage.scheduler.run_due()
        # The relay's own loop publishes, and tries again while a connection is being
        # restored (a healed node can drop the clients that reached it meanwhile).
        stack.triage.relay.wake()
        await twilio.wait_for_messages(len(morning.expected_texts), timeout=60)
        await every_text_recorded_as_sent(stack.notifier, len(morning.expected_texts))
        assert_texted_exactly(twilio, morning.expected_texts)
        assert await recorded_event_ids(stack.triage) >= {m["event_id"] for m in morning.marks}
    return {
        "marks": len(morning.marks), "texts": len(morning.expected_texts),
        "node": victim.name, "leader_after": new_leader,
        "seconds_without_consumption": round(without_consumption, 2),
        "seconds_until_every_mark_recorded": round(all_marks_after, 2),
        "seconds_to_heal_the_node": round(healed_after, 1),
    }


async def test_killing_the_leading_node_loses_and_doubles_nothing(
    rabbit_cluster: RabbitCluster, vhost: str,
    cluster_connection: aio_pika.abc.AbstractRobustConnection,
    twilio: TwilioStub, smtp: SmtpSink, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    figures = await _morning_through_a_fault(
        rabbit_cluster, vhost, cluster_connection, twilio, smtp, tmp_path,
        fault=rabbit_cluster.kill, heal=rabbit_cluster.restart)
    record(tmp_path_factory, "kill -9 of the leading node", figures)


async def test_freezing_the_leading_node_loses_and_doubles_nothing(
    rabbit_cluster: RabbitCluster, vhost: str,
    cluster_connection: aio_pika.abc.AbstractRobustConnection,
    twilio: TwilioStub, smtp: SmtpSink, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    figures = await _morning_through_a_fault(
        rabbit_cluster, vhost, cluster_connection, twilio, smtp, tmp_path,
        fault=rabbit_cluster.pause, heal=rabbit_cluster.resume)
    record(tmp_path_factory, "the leading node frozen (SIGSTOP), then resumed", figures)


@pytest.mark.postgres
async def test_two_replicas_of_each_service_on_the_cluster_text_what_one_would(
    rabbit_cluster: RabbitCluster, vhost: str,
    cluster_connection: aio_pika.abc.AbstractRobustConnection, postgres_url: str,
    twilio: TwilioStub, smtp: SmtpSink, tmp_path: Path,
) -> None:
    morning = Morning()
    urls = rabbit_cluster.urls(vhost, CLIENT_QUERY)
    # The second replicas connect to the nodes in the other order: another node's clients.
    reversed_urls = ",".join(reversed(urls.split(",")))
    async with Stack(amqp_url=urls, broker=cluster_connection, database_url=postgres_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path) as stack:
        triage2 = TriageService(stack.triage_settings.model_copy(update={"amqp_url": reversed_urls}),
                                stack.clock, run_scheduler=False)
        notifier2 = NotifierService(
            stack.notifier_settings.model_copy(update={"amqp_url": reversed_urls}), stack.clock)
        await triage2.start()
        await notifier2.start()
        try:
            assert (await stack.put_school(morning.roster)).status_code == 200
            stack.at(9, 15)
            await stack.publish(*morning.marks)
            replicas = [stack.triage.consumer, triage2.consumer]
            await every_mark_recorded(stack.triage, morning.marks, replicas=[triage2])
            assert all(c is not None and c.settled > 0 for c in replicas), "both replicas worked"

            stack.at(9, 30)
            assert stack.triage.scheduler and triage2.scheduler
            settled = await asyncio.gather(stack.triage.scheduler.run_due(),
                                           triage2.scheduler.run_due())
            assert sum(settled) == len(morning.expected_texts), "each due contact settled once"
            assert stack.triage.relay and triage2.relay
            await asyncio.gather(stack.triage.relay.publish_pending(),
                                 triage2.relay.publish_pending())
            await twilio.wait_for_messages(len(morning.expected_texts), timeout=30)
            await every_text_recorded_as_sent(stack.notifier, len(morning.expected_texts))
            assert_texted_exactly(twilio, morning.expected_texts)
        finally:
            await notifier2.stop()
            await triage2.stop()
