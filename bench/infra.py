"""The machine's real RabbitMQ and PostgreSQL, set up and torn down the way tests/conftest.py
does it: a virtual host of our own per run, a database per measurement."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import asyncpg
from broker_messages import topology
from servicekit.message_signing import SigningKey

AMQP_BASE = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_DSN = os.environ.get("BENCH_POSTGRES_DSN",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
PUBLISH_WINDOW = 500  # unconfirmed publishes in flight
# CONTACT_SIGNING_KEY of every service the bench starts.
SIGNING_KEY = "bench-contact-signing-key-of-sufficient-length"


@contextlib.contextmanager
def fresh_vhost() -> Iterator[str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("bench: rabbitmqctl not found; a fresh virtual host per run is required")
    vhost = f"absence-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run([ctl, "add_vhost", vhost], capture_output=True, check=True)
    try:
        subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                       capture_output=True, check=True)
        yield AMQP_BASE.rstrip("/") + "/" + vhost
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, check=False)


class Databases:
    """PostgreSQL databases created for this run (optionally from a template), all dropped at
    the end."""

    def __init__(self) -> None:
        self._names: list[str] = []

    async def create(self, template: str | None = None) -> str:
        name = f"absence_bench_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            clause = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{clause}')
        finally:
            await conn.close()
        self._names.append(name)
        return name

    @staticmethod
    def url(name: str) -> str:
        base = POSTGRES_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{name}"

    @staticmethod
    async def connect(name: str) -> asyncpg.Connection:
        return await asyncpg.connect(POSTGRES_DSN.rsplit("/", 1)[0] + "/" + name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            for name in self._names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def publish(exchange: aio_pika.abc.AbstractExchange, routing_key: str,
                  bodies: list[bytes], *, signed: bool = False) -> float:
    """Publish with confirms (docs/contract.md §2), a window at a time; returns the seconds taken.
    `signed`: with triage's signature, as contact requests must be."""
    started = time.perf_counter()
    key = SigningKey(SIGNING_KEY)
    for start in range(0, len(bodies), PUBLISH_WINDOW):
        await asyncio.gather(*(
            exchange.publish(
                aio_pika.Message(body, content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 headers=key.headers(body) if signed else {}),
                routing_key=routing_key)
            for body in bodies[start:start + PUBLISH_WINDOW]))
    return time.perf_counter() - started


async def queue_state(connection: aio_pika.abc.AbstractConnection, name: str) -> tuple[int, int]:
    """(ready messages, consumers) of an existing queue."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return result.message_count or 0, result.consumer_count or 0
    finally:
        await channel.close()


async def purge_service_queues(connection: aio_pika.abc.AbstractConnection) -> None:
    channel = await connection.channel()
    await topology.declare_events(channel)
    await topology.declare_requests(channel)
    for name in (topology.TRIAGE_QUEUE, topology.EVENTS_DEAD_QUEUE, topology.NOTIFIER_QUEUE,
                 topology.REQUESTS_DEAD_QUEUE):
        await (await channel.get_queue(name)).purge()
    await channel.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set size so far."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return {"nproc": os.cpu_count(), "memory": f"{total_kb / 1024 / 1024:.1f} GiB",
            "cpu": model, "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
