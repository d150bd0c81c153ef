"""The services as operators run them (`python -m triage`, `python -m notifier`): peak memory
from /proc/<pid>/status VmHWM, and triage replicas side by side."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aio_pika
from broker_messages import topology

from bench.delivery import PUBLIC_BASE_URL, RATE_LIMIT_SETTING, SENDER, UNLIMITED
from bench.infra import SIGNING_KEY, Databases, free_port, peak_rss_mb, publish, queue_state
from bench.throughput import fill_triage_queue
from tests.fakes.twilio_stub import TwilioStub


@dataclass
class ProcessRun:
    count: int
    seconds: float
    peaks_mb: list[float]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def spawn(module: str, env: dict[str, str], workdir: Path, tag: str,
           wrapper: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    # cwd is a scratch directory so no developer `.env` or `var/` is picked up (docs/contract.md §1:
    # the services run from any working directory).
    log = open(workdir / f"{tag}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([*wrapper, sys.executable, "-m", module], cwd=workdir, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen[bytes]], interrupt: bool = False) -> None:
    # py-spy writes its profile when interrupted (and stops the child with it).
    for process in processes:
        process.send_signal(signal.SIGINT) if interrupt else process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def base_env(amqp_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRIAGE_", "NOTIFIER_", "TWILIO_", "SMTP_"))}
    env.update(AMQP_URL=amqp_url, API_TOKEN="bench-token-of-sufficient-length",
               CONTACT_SIGNING_KEY=SIGNING_KEY, LOG_LEVEL="WARNING")
    return env


def alive(processes: list[subprocess.Popen[bytes]], workdir: Path) -> None:
    for process in processes:
        if process.poll() is not None:
            logs = "\n".join(p.read_text()[-2000:] for p in workdir.glob("*.log"))
            raise RuntimeError(f"service exited with {process.returncode}:\n{logs}")


async def triage_processes(amqp_url: str, databases: Databases, database: str,
                           bodies: list[bytes], replicas: int, workdir: Path,
                           wrapper: tuple[str, ...] = (), received_before: int = 0
                           ) -> ProcessRun:
    """Pre-publish, start `replicas` triage processes on one PostgreSQL database, and time from
    the first consumer attaching to the last event recorded. `received_before`: events the
    database's deduplication log already holds (bench.year loads a year of them)."""
    await fill_triage_queue(amqp_url, bodies)
    connection = await aio_pika.connect_robust(amqp_url)
    db = await databases.connect(database)
    processes = []
    try:
        for replica in range(replicas):
            env = base_env(amqp_url) | {"TRIAGE_DATABASE_URL": databases.url(database),
                                         "TRIAGE_PORT": str(free_port())}
            processes.append(spawn("triage", env, workdir, f"triage-{replica}", wrapper))
        started = None
        deadline = time.monotonic() + max(180.0, len(bodies) / 50)
        while time.monotonic() < deadline:
            alive(processes, workdir)
            if started is None and (await queue_state(connection, topology.TRIAGE_QUEUE))[1]:
                started = time.perf_counter()
            if started is not None and await db.fetchval(
                    "SELECT count(*) FROM received_events") >= received_before + len(bodies):
                break
            await asyncio.sleep(0.05 if started is None else 0.25)
        else:
            raise RuntimeError("triage processes did not settle the burst in time")
        assert started is not None
        seconds = time.perf_counter() - started
        peaks = [] if wrapper else [peak_rss_mb(p.pid) for p in processes]
        return ProcessRun(len(bodies), seconds, peaks)
    finally:
        stop(processes, interrupt=bool(wrapper))
        await db.close()
        await connection.close()


async def _publish_requests(amqp_url: str, requests: list[bytes]) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_requests(channel)
        # What a triage process's scheduler requested meanwhile is not part of this workload.
        await (await channel.get_queue(topology.NOTIFIER_QUEUE)).purge()
        exchange = await channel.get_exchange(topology.REQUESTS_EXCHANGE)
        await publish(exchange, topology.CONTACT_REQUEST_ROUTING_KEY, requests, signed=True)
    finally:
        await connection.close()


def _notifier_env(amqp_url: str, database_url: str, stub: TwilioStub, workdir: Path,
                  limit: float) -> dict[str, str]:
    return base_env(amqp_url) | {
        "NOTIFIER_DATABASE_URL": database_url, "NOTIFIER_PORT": str(free_port()),
        "TWILIO_ACCOUNT_SID": stub.account_sid, "TWILIO_AUTH_TOKEN": stub.auth_token,
        "TWILIO_FROM": SENDER, "TWILIO_API_BASE": stub.base_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "OUTBOX_DIR": str(workdir / "outbox"),
        "NOTIFIER_DISPATCH_POLL_SECONDS": "0.05", RATE_LIMIT_SETTING: str(limit),
    }


async def _wait_for_stub(stub: TwilioStub, count: int, processes: list[subprocess.Popen[bytes]],
                         workdir: Path) -> None:
    deadline = time.monotonic() + max(180.0, count / 20)
    while len(stub.messages) < count:
        alive(processes, workdir)
        if time.monotonic() > deadline:
            raise RuntimeError(f"notifiers sent {len(stub.messages)} of {count} SMS")
        await asyncio.sleep(0.1)


async def notifier_process(amqp_url: str, databases: Databases, stub: TwilioStub,
                           requests: list[bytes], workdir: Path) -> ProcessRun:
    """Pre-publish contact requests, start `python -m notifier` against the Twilio stub, time
    it to the last SMS at the provider."""
    stub.reset()
    await _publish_requests(amqp_url, requests)
    database = await databases.create()
    # The limit raised out of the way: this run measures memory, not the limit.
    env = _notifier_env(amqp_url, databases.url(database), stub, workdir, UNLIMITED)
    started = time.perf_counter()
    process = spawn("notifier", env, workdir, "notifier")
    try:
        await _wait_for_stub(stub, len(requests), [process], workdir)
        seconds = time.perf_counter() - started
        return ProcessRun(len(requests), seconds, [peak_rss_mb(process.pid)])
    finally:
        stop([process])


async def notifier_replicas(amqp_url: str, databases: Databases, stub: TwilioStub,
                            requests: list[bytes], replicas: int, limit: float,
                            workdir: Path) -> list[float]:
    """Pre-publish contact requests, start `replicas` `python -m notifier` processes on one
    PostgreSQL database with an SMS limit of `limit`/s, and return when each SMS reached the
    stub (after half a second more, to catch over-sending)."""
    stub.reset()
    await _publish_requests(amqp_url, requests)
    url = databases.url(await databases.create())
    processes = [spawn("notifier", _notifier_env(amqp_url, url, stub, workdir, limit), workdir,
                        f"notifier-{replica}") for replica in range(replicas)]
    try:
        await _wait_for_stub(stub, len(requests), processes, workdir)
        await asyncio.sleep(0.5)
    finally:
        stop(processes)
    return sorted(stub.arrivals[m["sid"]] for m in stub.messages)
