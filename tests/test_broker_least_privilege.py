"""docs/security.md "Broker": mark publishers, triage and the notifier each have a broker user
allowed only what it does.

`infra/rabbitmq/definitions.json` is imported, as deployed, into a throwaway virtual host of the
real broker (its users renamed so that nothing outside the test can use them), and each user is
then tried against what it must and must not be able to do.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import pytest
import yaml
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused
from broker_messages import topology

from tests.factories import contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack, family_request, parent

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = ROOT / "infra" / "rabbitmq" / "definitions.json"
COMPOSE = ROOT / "docker-compose.yml"
HOST = "127.0.0.1:5672"
RABBITMQCTL = shutil.which("rabbitmqctl")


def _ctl(*args: str) -> str:
    assert RABBITMQCTL is not None
    return subprocess.run([RABBITMQCTL, "-q", *args], capture_output=True, check=True,
                          text=True, timeout=120).stdout


def _import(definitions: dict[str, Any], vhost: str, users: int) -> None:
    """rabbitmqctl imports in the background: wait until the vhost's users and queues are
    there (no event to await; each call takes a moment of its own)."""
    # Readable by the broker's own user, which rabbitmqctl may switch to. No secrets in it.
    folder = Path(tempfile.mkdtemp(prefix="absence-definitions-"))
    try:
        folder.chmod(0o755)
        path = folder / "definitions.json"
        path.write_text(json.dumps(definitions), encoding="utf-8")
        path.chmod(0o644)
        _ctl("import_definitions", str(path))
        deadline = time.monotonic() + 60
        while not (_lines("list_vhosts", "name") and vhost in _lines("list_vhosts", "name")
                   and len(_lines("list_permissions", "-p", vhost)) >= users
                   and len(_lines("list_queues", "-p", vhost, "name"))
                   >= len(definitions["queues"])):
            assert time.monotonic() < deadline, "definitions were not imported"
            time.sleep(0.2)
    finally:
        shutil.rmtree(folder)


def _lines(*args: str) -> list[str]:
    try:
        return [line for line in _ctl(*args).splitlines() if line.strip()]
    except subprocess.CalledProcessError:  # the vhost does not exist yet
        return []


def _definitions() -> dict[str, Any]:
    loaded = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_definitions_declare_the_users_and_permissions_of_topology() -> None:
    definitions = _definitions()
    expected = {p.user: p.patterns() for p in topology.broker_permissions()}
    assert {u["name"] for u in definitions["users"]} == set(expected)
    # Credentials stay out of the repository: deployments set each password.
    assert all(u["password_hash"] == "" and u["tags"] == [] for u in definitions["users"])
    assert {p["user"]: (p["configure"], p["write"], p["read"])
            for p in definitions["permissions"]} == expected
    assert {p["vhost"] for p in definitions["permissions"]} == {"/"}


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    """An AMQP URL per user of definitions.json, in a fresh virtual host."""
    if RABBITMQCTL is None:
        pytest.skip("rabbitmqctl is needed to create broker users")
    suffix = uuid.uuid4().hex[:8]
    vhost = f"absence-privilege-{suffix}"
    definitions = _definitions()
    renamed = {user["name"]: f"{user['name']}-{suffix}" for user in definitions["users"]}
    for user in definitions["users"]:
        user["name"] = renamed[user["name"]]
    definitions["vhosts"] = [{"name": vhost}]
    for kind in ("permissions", "exchanges", "queues", "bindings", "policies"):
        for entry in definitions.get(kind, []):
            entry["vhost"] = vhost
            if "user" in entry:
                entry["user"] = renamed[entry["user"]]
    passwords = {user: secrets.token_hex(16) for user in renamed}  # never "-…"
    try:
        _import(definitions, vhost, len(renamed))
        for user, name in renamed.items():
            _ctl("change_password", name, passwords[user])
        yield {user: f"amqp://{name}:{passwords[user]}@{HOST}/{quote(vhost, safe='')}"
               for user, name in renamed.items()}
    finally:
        subprocess.run([RABBITMQCTL, "delete_vhost", vhost], capture_output=True, check=False,
                       timeout=120)
        for name in renamed.values():
            subprocess.run([RABBITMQCTL, "delete_user", name], capture_output=True, check=False,
                           timeout=120)


@pytest.fixture
async def publisher(urls: dict[str, str]) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(urls[topology.PUBLISHER_USER])
    yield connection
    await connection.close()


async def _publish(connection: AbstractRobustConnection, exchange_name: str,
                   routing_key: str, body: bytes) -> None:
    async with connection.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)


async def test_publisher_sends_marks_to_the_events_exchange(
    publisher: AbstractRobustConnection, urls: dict[str, str],
) -> None:
    await _publish(publisher, topology.EVENTS_EXCHANGE, "register.mark",
                   json.dumps(mark("P1")).encode())
    triage = await aio_pika.connect_robust(urls[topology.TRIAGE_USER])
    async with triage, triage.channel() as channel:
        queue, _ = await topology.declare_events(channel)
        got = await queue.get(timeout=5)
        await got.ack()
    assert json.loads(got.body)["pupil_id"] == "P1"


@pytest.mark.parametrize("exchange_name, routing_key", [
    (topology.REQUESTS_EXCHANGE, topology.CONTACT_REQUEST_ROUTING_KEY),  # a forged request
    (topology.REQUESTS_EXCHANGE, topology.CONTACT_CANCEL_ROUTING_KEY),
    (topology.NOTIFIER_EVENTS_EXCHANGE, topology.REPLY_ROUTING_KEY),  # a forged reply
    (topology.REQUESTS_DEAD_EXCHANGE, ""),
    (topology.EVENTS_DEAD_EXCHANGE, ""),
    ("", topology.NOTIFIER_QUEUE),  # the default exchange, straight to the queue
])
async def test_publisher_cannot_publish_anywhere_else(
    publisher: AbstractRobustConnection, exchange_name: str, routing_key: str,
) -> None:
    with pytest.raises(ChannelAccessRefused):
        await _publish(publisher, exchange_name, routing_key, b"{}")


@pytest.mark.parametrize("queue_name", [
    topology.TRIAGE_QUEUE, topology.NOTIFIER_QUEUE, topology.TRIAGE_REPLIES_QUEUE,
    topology.EVENTS_DEAD_QUEUE, topology.REQUESTS_DEAD_QUEUE,
])
async def test_publisher_reads_no_queue(publisher: AbstractRobustConnection,
                                        queue_name: str) -> None:
    with pytest.raises(ChannelAccessRefused):
        async with publisher.channel() as channel:
            queue = await channel.get_queue(queue_name, ensure=False)
            await queue.get(fail=False)


async def test_publisher_declares_and_deletes_nothing(
    publisher: AbstractRobustConnection,
) -> None:
    with pytest.raises(ChannelAccessRefused):
        async with publisher.channel() as channel:
            await topology.declare_events(channel)
    with pytest.raises(ChannelAccessRefused):
        async with publisher.channel() as channel:
            await channel.queue_delete(topology.NOTIFIER_QUEUE)


async def test_notifier_cannot_publish_contact_requests_or_marks(urls: dict[str, str]) -> None:
    notifier = await aio_pika.connect_robust(urls[topology.NOTIFIER_USER])
    async with notifier:
        for exchange_name in (topology.REQUESTS_EXCHANGE, topology.EVENTS_EXCHANGE):
            with pytest.raises(ChannelAccessRefused):
                await _publish(notifier, exchange_name, "contact.request", b"{}")


async def test_each_service_does_its_work_with_its_own_user_and_forgeries_go_nowhere(
    urls: dict[str, str], publisher: AbstractRobustConnection, twilio: TwilioStub,
    smtp: SmtpSink, tmp_path: Path,
) -> None:
    async with Stack(amqp_url=urls[topology.TRIAGE_USER], broker=publisher,
                     database_url=f"sqlite+aiosqlite:///{tmp_path}/state.db", twilio=twilio,
                     smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"amqp_url": urls[topology.NOTIFIER_USER]}) as stack:
        forged = family_request(stack.clock.now(), parent(1, "+447700900666"))
        with pytest.raises(ChannelAccessRefused):
            await _publish(publisher, topology.REQUESTS_EXCHANGE,
                           topology.CONTACT_REQUEST_ROUTING_KEY,
                           forged.model_dump_json(by_alias=True).encode())
        # On the exchange it may use, a request has no queue to reach.
        await _publish(publisher, topology.EVENTS_EXCHANGE, topology.CONTACT_REQUEST_ROUTING_KEY,
                       forged.model_dump_json(by_alias=True).encode())

        await stack.put_school(school([pupil("P1", "Sally",
                                             contacts=[contact(1, phone="+447700900001")])]))
        await stack.publish(mark("P1", "N"), b"{not json")  # the second is dead-lettered
        # Marks taken over HTTP go onto the exchange on triage's own user.
        assert (await stack.post_events([mark("P1", "N", session="PM")])).status_code == 202
        await stack.processed()
        stack.at(9, 30)
        assert await stack.run_due() == 1
        (text,) = await stack.twilio.wait_for_messages(1)
        assert text["to"] == "+447700900001"
        await stack.sent(1)
        # The parent's reply goes from the notifier to triage on the notifier's user.
        assert (await stack.inbound_sms("+447700900001", "She is ill")).status_code == 200
        assert stack.triage.reply_consumer is not None
        await stack.triage.reply_consumer.wait_settled(1)
    assert [t["to"] for t in twilio.messages] == ["+447700900001"]


def test_compose_runs_each_service_as_its_own_user_with_one_signing_key() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    for service, user in (("triage", topology.TRIAGE_USER),
                          ("notifier", topology.NOTIFIER_USER)):
        assert urlsplit(services[service]["environment"]["AMQP_URL"]).username == user
    assert (services["triage"]["environment"]["CONTACT_SIGNING_KEY"]
            == services["notifier"]["environment"]["CONTACT_SIGNING_KEY"])
    importer = "\n".join(services["rabbitmq-definitions"]["command"])
    for permissions in topology.broker_permissions():
        assert f"declare user name={permissions.user} password=" in importer
