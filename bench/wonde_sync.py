"""bench "Wonde sync" (`python -m bench --only wonde [--quick]`): one morning of a local
authority's schools synced through Wonde by the real `mis_sync` code (`mis_sync.app.running`,
`Syncer.sync_all`) into the real triage, on the run's broker, on SQLite and on PostgreSQL.

The loopback Wonde stub (tests/fakes/wonde_stub.py, Wonde's page size of 200) serves the
generated authority (bench/generator.py): every school's students with their contacts and
this morning's AM session marks. Triage runs in this process (scheduler off) behind uvicorn
on loopback, as import_csv's bench does; mis_sync talks to it over HTTP and publishes with
confirms. Measured, per database:

- the first sync: every roster read and PUT, every mark read, published and confirmed
  (`sync_all` returns), then to the last mark applied in triage;
- an incremental sync at 09:30 with nothing new. Wonde is asked from 10 minutes before each
  cursor (mis_sync/sync.py OVERLAP), and a cursor is the newest record handed over, so that
  record always comes back: "anything changed?" is yes for every roster (read again, not
  re-sent: same digest) and the marks of the cursor's last 10 minutes are published again
  (duplicates that triage acknowledges and ignores). The pass's Wonde requests are counted.

Baselines in the same run: the bare consume-and-ack rate of the same events on the same
broker (bench.throughput, the ceiling any consumer reaches), and a read-only pass over the
stub (every page mis_sync reads, nothing handed over): what Wonde's paging alone costs here.
The stub shares this process and its event loop with mis_sync and triage (2 cores): its
serving time is in every figure, which is what the read-only pass shows."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mis_sync import mapping
from mis_sync.app import running
from mis_sync.settings import MisSyncSettings, SchoolLink, WondeSettings
from mis_sync.sync import ROSTER_INCLUDE, STUDENTS, SchoolOutcome, school_year_start, wonde_cursor
from mis_sync.wonde import PER_PAGE, WondeClient
from pydantic import SecretStr
from servicekit.clock import FrozenClock
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.migrations import upgrade
from triage.models import marks, parked_events, pupils, received_events
from triage.settings import TriageSettings

from bench.generator import LONDON, Authority, generate
from bench.report import Report
from bench.throughput import bare_consume, dead_lettered, triage_settings
from tests.browser import served
from tests.fakes import wonde_stub
from tests.fakes.wonde_stub import WondeStub

MONDAY = dt.date(2026, 11, 23)
REGISTERS_FROM = dt.datetime(2026, 11, 23, 8, 40, tzinfo=LONDON)  # marks until 09:10
FIRST_SYNC = dt.datetime(2026, 11, 23, 9, 25, tzinfo=LONDON)
INCREMENTAL_SYNC = dt.datetime(2026, 11, 23, 9, 30, tzinfo=LONDON)
TOKEN = "bench-wonde-triage-token-of-sufficient-length"
# National codes the generator records that the stub's default list lacks, as a MIS lists them.
EXTRA_CODES = (("M", "AUTHORISED_ABSENCE"), ("C", "AUTHORISED_ABSENCE"),
               ("G", "UNAUTHORISED_ABSENCE"))

DatabaseUrl = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class Pass:
    """One `sync_all`: seconds until it returned, seconds until triage settled what it
    published, and each school's outcome."""

    returned: float
    settled: float
    outcomes: list[SchoolOutcome]
    requests: Counter[str]  # Wonde requests of the pass, by resource

    @property
    def published(self) -> int:
        return sum(o.marks_published for o in self.outcomes)


def wonde_id(urn: str) -> str:
    return f"W{urn}"


def _contact(contact: dict[str, Any]) -> dict[str, Any]:
    """The generator's contact as Wonde embeds it (its number is unique: the contact's id)."""
    forename, _, surname = contact["name"].partition(" ")
    return wonde_stub.contact(
        f"C{contact['phone'][-9:]}", forename, surname, priority=contact["priority"],
        relationship="Parent", court_order=contact["no_contact"], mobile=contact["phone"],
        email=contact["email"], language=contact["language"])


def fill(stub: WondeStub, authority: Authority) -> None:
    """Every school's students, contacts and AM marks into the stub."""
    for document in authority.schools:
        school = stub.school(wonde_id(document["urn"]))
        for n, (code, meaning) in enumerate(EXTRA_CODES, start=len(school.codes) + 1):
            school.codes[f"AC{n}"] = {"id": f"AC{n}", "code": code, "description": code,
                                      "type": meaning}
        for record in document["pupils"]:
            stub.add_student(wonde_id(document["urn"]), record["id"], record["given_name"],
                             record["family_name"], [_contact(c) for c in record["contacts"]])
    for mark in authority.marks:
        stub.mark(wonde_id(mark["school_urn"]), f"R{mark['pupil_id']}", mark["pupil_id"],
                  mark["code"], day=MONDAY, session="AM",
                  updated_at=dt.datetime.fromisoformat(mark["recorded_at"]))


def school_files(directory: Path, authority: Authority) -> None:
    """`{urn}.json` per school: the document without its pupils, which come from Wonde."""
    directory.mkdir(parents=True, exist_ok=True)
    for document in authority.schools:
        (directory / f"{document['urn']}.json").write_text(
            json.dumps({k: v for k, v in document.items() if k != "pupils"}))


def events(stub: WondeStub) -> list[bytes]:
    """The bodies mis_sync publishes for the stub's marks (for the bare baseline)."""
    bodies = []
    for school_id, school in stub.schools.items():
        for record in school.sessions.values():
            event = mapping.mark_event(school_id.removeprefix("W"), record, school.codes)
            assert event is not None, "every generated mark maps to a register code"
            bodies.append(json.dumps(event).encode())
    return bodies


async def read_only(stub: WondeStub, links: tuple[SchoolLink, ...]) -> tuple[float, int]:
    """Every page a first sync reads (students with contacts, codes, sessions), nothing
    handed over: seconds and records."""
    client = WondeClient(stub.base_url, stub.token, FrozenClock(FIRST_SYNC))
    records = 0
    started = time.perf_counter()
    try:
        since = {"updated_after": wonde_cursor(school_year_start(FIRST_SYNC))}
        for link in links:
            for resource, params in ((STUDENTS, {"include": ROSTER_INCLUDE}),
                                     ("attendance-codes", {}), ("attendance/session", since)):
                async for page in client.pages(link.wonde_id, resource, params):
                    records += len(page)
    finally:
        await client.close()
    return time.perf_counter() - started, records


async def run(report: Report, amqp_url: str, databases: dict[str, DatabaseUrl], *,
              schools: int, pupils: int, seed: int, workdir: Path, bare_runs: int) -> None:
    authority = generate(seed=seed, schools=schools, pupils=pupils, day=MONDAY,
                         recorded_from=REGISTERS_FROM)
    school_files(workdir / "schools", authority)
    links = tuple(SchoolLink(wonde_id(d["urn"]), d["urn"]) for d in authority.schools)
    report.notes.append(
        f"Authority: {len(authority.schools)} schools, {authority.pupil_count:,} pupils with "
        f"{len({c['phone'] for s in authority.schools for p in s['pupils'] for c in p['contacts']}):,} "
        f"contacts, {len(authority.marks):,} AM marks recorded 08:40-09:10 (seed {seed}); "
        f"first sync at 09:25, incremental at 09:30 (frozen clock).")
    async with WondeStub(page_size=PER_PAGE) as stub:
        fill(stub, authority)
        bodies = events(stub)
        seconds, records = await read_only(stub, links)
        report.figure("Wonde read only: every page of a first sync, nothing handed over",
                      f"{seconds:.1f} s", note=f"{records:,} records, {records / seconds:,.0f}/s;"
                      f" {len(stub.requests):,} requests, {PER_PAGE} a page; stub in-process")
        prefetch = TriageSettings.model_fields["prefetch"].default
        runs = sorted([await bare_consume(amqp_url, bodies, prefetch) for _ in range(bare_runs)],
                      key=lambda rate: rate.per_second)
        ceiling = runs[len(runs) // 2].per_second
        report.figure("bare aio-pika consume-and-ack of the same events (ceiling)",
                      f"{ceiling:,.0f} msg/s", "100%",
                      f"median of {len(runs)} ({', '.join(f'{r.per_second:,.0f}' for r in runs)})"
                      f"; publish with confirms, 500 in flight: "
                      f"{runs[len(runs) // 2].publish_per_second:,.0f} msg/s")
        for label, make_url in databases.items():
            await _backend(report, label, await make_url(label), amqp_url, stub, links,
                           authority, workdir, ceiling)
    dead = await dead_lettered(amqp_url)
    report.check(f"no event dead-lettered ({dead})", dead == 0)


async def _backend(report: Report, label: str, database_url: str, amqp_url: str,
                   stub: WondeStub, links: tuple[SchoolLink, ...], authority: Authority,
                   workdir: Path, ceiling: float) -> None:
    clock = FrozenClock(FIRST_SYNC)
    service = TriageService(triage_settings(amqp_url, database_url,
                                            api_token=SecretStr(TOKEN)),
                            clock, run_scheduler=False)
    await upgrade(service.engine)
    await service.start()
    try:
        async with served(triage_app(service)) as triage_url:
            settings = MisSyncSettings(
                amqp_url=amqp_url, triage_url=triage_url, triage_key=SecretStr(TOKEN),
                database_url=f"sqlite+aiosqlite:///{workdir}/mis_sync-{label}.db",
                schools_dir=workdir / "schools",
                wonde=WondeSettings(api_base=stub.base_url, token=SecretStr(stub.token),
                                    schools=",".join(f"{k.wonde_id}:{k.urn}" for k in links)))
            async with running(settings, clock) as syncer:
                first = await _timed(syncer.sync_all(settings.wonde.links()), service, 0, stub)
                clock.set(INCREMENTAL_SYNC)
                again = await _timed(syncer.sync_all(settings.wonde.links()), service,
                                     first.published, stub)
        counts = await _counts(service.engine, authority)
    finally:
        await service.stop()
    sessions = len(authority.marks)
    overall = sessions / first.settled
    report.figure(f"first sync, {label}: rosters + marks, `sync_all` returned",
                  f"{first.returned:.1f} s",
                  note=f"{authority.pupil_count:,} pupils PUT in {len(links)} rosters, "
                       f"{first.published:,} marks published and confirmed; Wonde requests: "
                       f"{_requests(first)}")
    report.figure(f"first sync, {label}: to the last mark applied in triage",
                  f"{first.settled:.1f} s ({overall:,.0f} marks/s)", f"{overall / ceiling:.0%}",
                  "marks / wall time of the whole sync, rosters included")
    report.figure(f"incremental sync, nothing new, {label}", f"{again.settled:.2f} s",
                  note=f"`sync_all` returned in {again.returned:.2f} s; Wonde requests: "
                       f"{_requests(again)}: every roster read again (not re-sent), "
                       f"{again.published:,} marks from the 10-minute overlap published again "
                       "(duplicates, acknowledged unchanged)")
    report.check(f"{label}: every school synced, every roster uploaded, "
                 f"{first.published:,} of {sessions:,} marks published",
                 all(o.state == "synced" and o.roster == "uploaded" and not o.marks_skipped
                     for o in first.outcomes) and first.published == sessions)
    report.check(f"{label}: {counts.on_roll:,} of {authority.pupil_count:,} pupils on roll",
                 counts.on_roll == authority.pupil_count)
    report.check(f"{label}: every mark applied exactly once ({counts.events:,} events stored, "
                 f"{counts.marks:,} marks, {counts.matching:,} with the MIS's code, "
                 f"{counts.parked} parked)",
                 counts.events == counts.marks == counts.matching == sessions
                 and counts.parked == 0)
    report.check(f"{label}: the incremental sync changed nothing (rosters unchanged, "
                 "re-published marks all duplicates)",
                 all(o.state == "synced" and o.roster == "unchanged" for o in again.outcomes))


def _requests(run: Pass) -> str:
    return ", ".join(f"{count:,} {resource}" for resource, count in sorted(run.requests.items()))


async def _timed(sync: Awaitable[list[SchoolOutcome]], service: TriageService,
                 settled_before: int, stub: WondeStub) -> Pass:
    asked = len(stub.requests)
    started = time.perf_counter()
    outcomes = await sync
    returned = time.perf_counter() - started
    published = sum(o.marks_published for o in outcomes)
    assert service.consumer is not None
    await service.consumer.wait_settled(settled_before + published,
                                        timeout=max(120.0, published / 100))
    return Pass(returned, time.perf_counter() - started, outcomes,
                Counter(resource for _, resource, _ in stub.requests[asked:]))


@dataclass(frozen=True)
class Counts:
    on_roll: int
    events: int
    marks: int
    matching: int  # marks whose code is the one the generator recorded
    parked: int


async def _counts(engine: AsyncEngine, authority: Authority) -> Counts:
    expected = {(m["school_urn"], m["pupil_id"]): m["code"] for m in authority.marks}
    async with engine.connect() as conn:
        on_roll = await conn.scalar(select(func.count()).select_from(pupils)
                                    .where(pupils.c.on_roll.is_(True)))
        stored = await conn.scalar(select(func.count()).select_from(received_events))
        parked = await conn.scalar(select(func.count()).select_from(parked_events))
        rows = (await conn.execute(select(marks.c.school_urn, marks.c.pupil_id, marks.c.code)
                                   .where(marks.c.date == MONDAY))).all()
    matching = sum(expected.get((row.school_urn, row.pupil_id)) == row.code for row in rows)
    return Counts(on_roll or 0, stored or 0, len(rows), matching, parked or 0)
