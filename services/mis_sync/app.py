"""Composition root and commands: `python -m mis_sync` syncs every MIS_SYNC_INTERVAL_SECONDS;
`once` runs one pass and prints each school's outcome; `status` prints each school's state
and cursors; `resume URN` syncs a school again after it re-approved the app. Output is JSON,
one school a line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from broker_messages.topology import EVENTS_EXCHANGE
from servicekit import logs
from servicekit.broker import close_quietly, connect, persistent_message
from servicekit.clock import Clock, clock_from_setting
from servicekit.database import make_engine

from mis_sync import store
from mis_sync.settings import MisSyncSettings
from mis_sync.sync import Syncer
from mis_sync.wonde import Record, Sleep, WondeClient

log = logging.getLogger(__name__)
TRIAGE_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


@asynccontextmanager
async def running(settings: MisSyncSettings, clock: Clock, *,
                  sleep: Sleep = asyncio.sleep) -> AsyncIterator[Syncer]:
    """Everything a pass needs: the database (migrated), the broker, Wonde and triage."""
    assert settings.wonde.token is not None, "checked by main()"
    engine = make_engine(settings.database_url)
    connection = None
    wonde = WondeClient(settings.wonde.api_base, settings.wonde.token.get_secret_value(),
                        clock, sleep=sleep)
    triage = httpx.AsyncClient(
        base_url=settings.triage_url, timeout=TRIAGE_TIMEOUT,
        headers={"Authorization": f"Bearer {settings.triage_token()}"})
    try:
        await store.migrate(engine)
        connection = await connect(settings.amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        # Not declared: the publisher's broker user may only write to it (docs/security.md).
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)

        async def publish(event: Record) -> None:
            await exchange.publish(
                persistent_message(json.dumps(event).encode(), message_id=event["event_id"]),
                routing_key="register.mark")

        yield Syncer(engine=engine, wonde=wonde, triage=triage, publish=publish, clock=clock,
                     schools_dir=settings.schools_dir)
    finally:
        await triage.aclose()
        await wonde.close()
        await close_quietly(connection)
        await engine.dispose()


async def _forever(settings: MisSyncSettings, clock: Clock) -> None:
    async with running(settings, clock) as syncer:
        while True:
            await syncer.sync_all(settings.wonde.links())
            await asyncio.sleep(settings.interval_seconds)


async def _once(settings: MisSyncSettings, clock: Clock) -> int:
    async with running(settings, clock) as syncer:
        outcomes = await syncer.sync_all(settings.wonde.links())
    for outcome in outcomes:
        print(json.dumps(dataclasses.asdict(outcome)))
    return 1 if any(o.state == "failed" for o in outcomes) else 0


async def _status(settings: MisSyncSettings) -> int:
    engine = make_engine(settings.database_url)
    try:
        await store.migrate(engine)
        for status in await store.all_statuses(engine):
            print(json.dumps(status.report()))
    finally:
        await engine.dispose()
    return 0


async def _resume(settings: MisSyncSettings, urn: str) -> int:
    engine = make_engine(settings.database_url)
    try:
        await store.migrate(engine)
        found = await store.resume(engine, urn)
    finally:
        await engine.dispose()
    print(f"school {urn} will be synced again" if found else f"no school {urn} has synced yet",
          file=sys.stderr)
    return 0 if found else 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mis_sync")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("once", help="one pass over every school, then exit")
    commands.add_parser("status", help="each school's state and cursors")
    resume = commands.add_parser("resume", help="sync a school again after it re-approved")
    resume.add_argument("urn")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = MisSyncSettings()
    logs.configure(settings.log_level)
    clock = clock_from_setting(settings.clock_offset_seconds)
    if args.command == "status":
        return asyncio.run(_status(settings))
    if args.command == "resume":
        return asyncio.run(_resume(settings, args.urn))
    token = settings.wonde.token
    if token is None or not token.get_secret_value().strip():
        print("set WONDE_TOKEN (and WONDE_SCHOOLS) to sync schools through Wonde",
              file=sys.stderr)
        return 2
    try:
        settings.triage_token()
    except ValueError as problem:
        print(problem, file=sys.stderr)
        return 2
    if args.command == "once":
        return asyncio.run(_once(settings, clock))
    try:
        asyncio.run(_forever(settings, clock))
    except KeyboardInterrupt:
        log.info("mis_sync.stopped")
    return 0
