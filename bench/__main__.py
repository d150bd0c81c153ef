"""`python -m bench [--quick]`: every figure in one run, on one broker (a fresh virtual host,
deleted at the end), from one generated local authority.

Order: rosters -> bare consume-and-ack ceiling -> triage on SQLite -> triage on PostgreSQL and
the morning hand-off to the provider (with the SMS check) -> end-to-end latency at a steady
rate -> notifier send rate -> naive sequential baseline -> the services as processes: peak
memory at 1/10, 1x (and 10x) and two triage replicas -> the staff pages (bench.staff_pages,
reported in a section of its own; `--only staff` runs just that) -> the same morning synced
through Wonde by mis_sync (bench.wonde_sync, its own section; `--only wonde`) -> a morning as
deployed, marks in to texts out with both services as processes (bench.as_deployed, its own
section; `--only deployed`) -> at full size, the morning of the 190th school day on a year of
history (bench.year, its own section; `--only year`, which also runs it at quick size)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from servicekit.clock import FrozenClock
from servicekit.database import make_engine
from triage.settings import TriageSettings

from bench import (
    as_deployed,
    delivery,
    notifier_rates,
    processes,
    rosters,
    staff_pages,
    wonde_sync,
    year,
)
from bench.generator import LONDON, Authority, encode, expected_first_day_sms, generate
from bench.infra import Databases, fresh_vhost, machine
from bench.report import Report
from bench.throughput import bare_consume, dead_lettered, triage_in_process
from tests.fakes.twilio_stub import TwilioStub

SEED = 20261123
SIZES = {"full": (300, 105_000), "quick": (15, 5_250)}
MONDAY = dt.date(2026, 11, 23)
# In-process runs: Monday 09:25, after registers close; contacts due at once (not_before 00:00).
REGISTERS_CLOSED = dt.datetime(2026, 11, 23, 9, 25, tzinfo=LONDON)
POLICY = {"first_day_contact": {"not_before": "00:00", "channels": ["sms"]}}
LATENCY_RATE = 500.0
LATENCY_SECONDS = {"full": 30, "quick": 8}
RATE_WINDOW_SECONDS = 5  # how long each rate-limited notifier run lasts
BARE_RUNS = 3
STAFF_REQUESTS = {"full": 10, "quick": 10}  # per figure


def _authority(mode: str, scale: float, day: dt.date, recorded_from: dt.datetime) -> Authority:
    schools, pupils = SIZES[mode]
    return generate(seed=SEED, schools=max(1, round(schools * scale)),
                    pupils=round(pupils * scale), day=day, recorded_from=recorded_from,
                    policy=POLICY)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


async def run(mode: str, report: Report, workdir: Path, with_10x: bool) -> None:
    authority = _authority(mode, 1, MONDAY, REGISTERS_CLOSED - dt.timedelta(minutes=45))
    events = authority.events()
    bodies = encode(events)
    expected = expected_first_day_sms(authority)
    report.notes.append(
        f"Authority: {len(authority.schools)} schools, {authority.pupil_count} pupils, "
        f"{len(authority.marks)} AM marks ({sum(m['code'] != '/' and m['code'] != 'L' for m in authority.marks)} absent, "
        f"{sum(m['code'] == 'N' for m in authority.marks)} N) + {len(authority.amendments)} "
        f"amendments; {len(expected)} first-day SMS expected (seed {SEED}).")
    prefetch = TriageSettings.model_fields["prefetch"].default
    with fresh_vhost() as amqp_url:
        databases = Databases()
        try:
            async with TwilioStub() as stub:
                await _in_process(mode, report, workdir, amqp_url, databases, stub, authority,
                                  bodies, expected, prefetch)
                await _as_processes(mode, report, workdir, amqp_url, databases, stub, with_10x)
        finally:
            await databases.drop_all()


async def _in_process(mode: str, report: Report, workdir: Path, amqp_url: str,
                      databases: Databases, stub: TwilioStub, authority: Authority,
                      bodies: list[bytes], expected: dict[tuple[str, str], str],
                      prefetch: int) -> None:
    template = await databases.create()
    seconds = await rosters.load(databases.url(template), authority, REGISTERS_CLOSED)
    report.figure("roster upload, PostgreSQL", f"{seconds:.1f} s",
                  note=f"{authority.pupil_count / seconds:,.0f} pupils/s via store_school")
    sqlite_template = workdir / "roster.db"
    await rosters.load(f"sqlite+aiosqlite:///{sqlite_template}", authority, REGISTERS_CLOSED)

    # The ceiling is the median of three runs: a quick-size run lasts half a second, and one
    # run alone swung the ratios by ten points on this shared machine.
    runs = sorted([await bare_consume(amqp_url, bodies, prefetch) for _ in range(BARE_RUNS)],
                  key=lambda rate: rate.per_second)
    bare = runs[len(runs) // 2]
    ceiling = bare.per_second
    report.figure("bare aio-pika consume-and-ack (ceiling)", f"{ceiling:,.0f} msg/s", "100%",
                  f"median of {len(runs)} runs ({', '.join(f'{r.per_second:,.0f}' for r in runs)}); "
                  f"{bare.count:,} msgs, quorum queue, prefetch {prefetch}, one ack per message")
    report.figure("publish rate (confirms, 500 in flight)", f"{bare.publish_per_second:,.0f} msg/s")
    # What servicekit.consumer's own plumbing is worth (its docstring cites this figure).
    underlay_runs = sorted([await bare_consume(amqp_url, bodies, prefetch, underlay=True)
                            for _ in range(BARE_RUNS)], key=lambda rate: rate.per_second)
    underlay = underlay_runs[len(underlay_runs) // 2].per_second
    report.figure("bare consume-and-ack on the aiormq channel underneath (BatchConsumer's path)",
                  f"{underlay:,.0f} msg/s", _pct(underlay, ceiling),
                  f"median of {len(underlay_runs)} runs; x{underlay / ceiling:.2f} the aio-pika "
                  "consumer above: no IncomingMessage and no task per delivery")

    rate, service = await triage_in_process(
        amqp_url, rosters.copy_sqlite(sqlite_template, workdir / "triage.db"),
        FrozenClock(REGISTERS_CLOSED), bodies)
    await service.stop()
    sqlite_ratio = rate.per_second / ceiling
    # What servicekit.sqlite_driver is worth (its docstring cites this figure).
    stock_url = rosters.copy_sqlite(sqlite_template, workdir / "triage-stock.db")
    stock, stock_service = await triage_in_process(
        amqp_url, stock_url, FrozenClock(REGISTERS_CLOSED), bodies,
        engine=make_engine(stock_url, one_trip=False))
    await stock_service.stop()
    report.figure("triage on SQLite", f"{rate.per_second:,.0f} marks/s", _pct(rate.per_second, ceiling),
                  f"{rate.count:,} events pre-published (publish {rate.publish_per_second:,.0f}/s); timed from start() (schema already migrated) to wait_settled")
    report.figure("triage on SQLite, SQLAlchemy's stock aiosqlite adapter",
                  f"{stock.per_second:,.0f} marks/s", _pct(stock.per_second, ceiling),
                  f"same run; servicekit.sqlite_driver above is x{rate.per_second / stock.per_second:.2f}")
    report.target("triage on SQLite >= 60% of bare", f"{100 * sqlite_ratio:.0f}%", sqlite_ratio >= 0.6)

    clock = FrozenClock(REGISTERS_CLOSED)
    rate, service = await triage_in_process(
        amqp_url, databases.url(await databases.create(template)), clock, bodies)
    settled_at = time.time()
    pg_ratio = rate.per_second / ceiling
    report.figure("triage on PostgreSQL", f"{rate.per_second:,.0f} marks/s", _pct(rate.per_second, ceiling),
                  f"publish {rate.publish_per_second:,.0f}/s")
    report.target("triage on PostgreSQL >= 50% of bare", f"{100 * pg_ratio:.0f}%", pg_ratio >= 0.5)
    dead = await dead_lettered(amqp_url)
    report.check(f"no event dead-lettered ({dead})", dead == 0)
    try:
        handoff = await delivery.morning_handoff(
            service, settled_at, amqp_url, databases.url(await databases.create()), stub, clock,
            workdir, expected)
    finally:
        await service.stop()
    report.figure("morning hand-off: last mark settled -> last SMS at provider",
                  f"{handoff.seconds_from_last_mark:.1f} s",
                  note=f"{handoff.sms:,} SMS; scheduler loop (50 ms poll) + notifier, PostgreSQL")
    report.target(f"all first-day contacts at the provider within 5 min of the last mark ({mode} size)",
                  f"{handoff.seconds_from_last_mark:.1f} s", handoff.seconds_from_last_mark <= 300)
    report.check("morning (with amendments): " + handoff.check.summary(), handoff.check.ok)
    report.target("docs/rules.md, siblings: absent siblings sharing a contact get one message",
                  f"{handoff.check.merged}/{handoff.check.families} families merged",
                  handoff.check.merged == handoff.check.families)

    count = min(len(authority.marks), int(LATENCY_RATE * LATENCY_SECONDS[mode]))
    latency = await delivery.end_to_end_latency(
        amqp_url, databases.url(await databases.create(template)),
        databases.url(await databases.create()), stub, FrozenClock(REGISTERS_CLOSED), workdir,
        authority, count, LATENCY_RATE)
    report.figure(f"end-to-end latency at {LATENCY_RATE:.0f} marks/s, p50 / p95 / p99 (max)",
                  f"{latency.p50 * 1000:.0f} / {latency.p95 * 1000:.0f} / {latency.p99 * 1000:.0f} ms "
                  f"({latency.worst * 1000:.0f} ms)",
                  note=f"{latency.marks:,} marks at {latency.achieved_rate:.0f}/s achieved, "
                       f"{latency.check.sent} SMS; publish -> Twilio stub accepted; scheduler "
                       "loop 50 ms poll, dispatcher 50 ms poll + wake, PostgreSQL")
    report.target("end-to-end p99 < 1 s at 500 marks/s", f"{latency.p99 * 1000:.0f} ms",
                  latency.p99 < 1.0)
    report.check("latency run (no amendments): " + latency.check.summary(), latency.check.ok)

    await notifier_rates.run(report, amqp_url, databases, stub, authority, expected,
                             FrozenClock(REGISTERS_CLOSED), workdir, RATE_WINDOW_SECONDS, SEED)


async def _as_processes(mode: str, report: Report, workdir: Path, amqp_url: str,
                        databases: Databases, stub: TwilioStub, with_10x: bool) -> None:
    # Subprocesses run on the system clock: marks are for today, recorded in the last hour.
    now = dt.datetime.now(dt.UTC)
    today = now.astimezone(LONDON).date()
    peaks: dict[str, dict[float, float]] = {"triage": {}, "notifier": {}}
    scales = (0.1, 1.0, 10.0) if with_10x else (0.1, 1.0)
    single = None
    for scale in scales:
        light = scale > 1
        authority = _authority(mode, scale, today, now - dt.timedelta(minutes=50))
        database = await databases.create()
        if light:
            # Light path: the 10x roster (COPY), marks for the 1x authority's pupils only.
            await rosters.bulk_load_postgres(databases, database, authority, now)
            authority = _authority(mode, 1, today, now - dt.timedelta(minutes=50))
        else:
            await rosters.load(databases.url(database), authority, now)
        expected = expected_first_day_sms(authority)
        run = await processes.triage_processes(
            amqp_url, databases, database, encode(authority.events()), 1, workdir)
        peaks["triage"][scale] = run.peaks_mb[0]
        if scale == 1.0:
            single = run
        sent = await processes.notifier_process(
            amqp_url, databases, stub,
            [r.model_dump_json(by_alias=True).encode()
             for r in delivery.contact_requests(authority, expected, now, at_any_hour=True)], workdir)
        peaks["notifier"][scale] = sent.peaks_mb[0]
        what = ("10x roster (COPY) + the 1x marks" if light else
                f"{authority.pupil_count:,} pupils, {run.count:,} events")
        report.figure(f"peak RSS at {scale:g}x: triage / notifier",
                      f"{run.peaks_mb[0]:.0f} MB / {sent.peaks_mb[0]:.0f} MB",
                      note=f"VmHWM of `python -m triage` ({what}, {run.per_second:,.0f} marks/s) "
                           f"and `python -m notifier` ({sent.count:,} SMS)")
    for service, by_scale in peaks.items():
        growth = by_scale[1.0] / by_scale[0.1]
        report.target(f"{service}: memory linear (1x/0.1x = {growth:.2f}, at most 10) and "
                      f"< 500 MB at 1x", f"{by_scale[1.0]:.0f} MB",
                      by_scale[1.0] < 500 and growth <= 10 and (
                          10.0 not in by_scale or by_scale[10.0] / by_scale[1.0] <= 10))
    if not with_10x:
        report.notes.append("10x memory not run in this mode (quick, or --no-10x).")
    assert single is not None
    database = await databases.create()
    authority = _authority(mode, 1, today, now - dt.timedelta(minutes=50))
    await rosters.load(databases.url(database), authority, now)
    double = await processes.triage_processes(
        amqp_url, databases, database, encode(authority.events()), 2, workdir)
    report.figure("triage replicas on PostgreSQL: 1 process / 2 processes",
                  f"{single.per_second:,.0f} / {double.per_second:,.0f} marks/s",
                  note=f"x{double.per_second / single.per_second:.2f}; pre-published, first "
                       "consumer attached -> all events recorded; schedulers running")


async def staff(mode: str, report: Report, workdir: Path) -> None:
    """The staff pages on SQLite and on PostgreSQL, for the run's number of schools."""
    schools, pupils = SIZES[mode]
    databases = Databases()

    async def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{workdir}/staff-{name}.db"

    async def postgres(_: str) -> str:
        return databases.url(await databases.create())

    try:
        await staff_pages.run(report, {"SQLite": sqlite, "PostgreSQL": postgres}, schools,
                              pupils // schools, STAFF_REQUESTS[mode], SEED, workdir)
    finally:
        await databases.drop_all()


async def wonde(mode: str, report: Report, workdir: Path) -> None:
    """The morning synced through Wonde, on SQLite and on PostgreSQL, on a vhost of its own."""
    schools, pupils = SIZES[mode]
    databases = Databases()

    async def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{workdir}/wonde-{name}.db"

    async def postgres(_: str) -> str:
        return databases.url(await databases.create())

    # One ceiling run at full size: 105,000 messages take long enough to be steady, and three
    # would add minutes to a run that should fit in a quarter of an hour.
    with fresh_vhost() as amqp_url:
        try:
            await wonde_sync.run(report, amqp_url, {"SQLite": sqlite, "PostgreSQL": postgres},
                                 schools=schools, pupils=pupils, seed=SEED, workdir=workdir,
                                 bare_runs=BARE_RUNS if mode == "quick" else 1)
        finally:
            await databases.drop_all()


async def deployed(mode: str, report: Report, workdir: Path) -> None:
    """A morning through both services as processes, on SQLite and PostgreSQL, on a vhost of
    its own."""
    with fresh_vhost() as amqp_url:
        await as_deployed.run(mode, report, amqp_url, workdir)


async def notifier(mode: str, report: Report, workdir: Path) -> None:
    """The notifier's send rates alone (bench.notifier_rates), on a vhost of their own."""
    authority = _authority(mode, 1, MONDAY, REGISTERS_CLOSED - dt.timedelta(minutes=45))
    with fresh_vhost() as amqp_url:
        databases = Databases()
        try:
            async with TwilioStub() as stub:
                await notifier_rates.run(report, amqp_url, databases, stub, authority,
                                         expected_first_day_sms(authority),
                                         FrozenClock(REGISTERS_CLOSED), workdir,
                                         RATE_WINDOW_SECONDS, SEED)
        finally:
            await databases.drop_all()


async def year_on(mode: str, report: Report, workdir: Path) -> None:
    """The morning of the 190th school day on a year of history, against the first morning."""
    schools, pupils = SIZES[mode]
    databases = Databases()
    with fresh_vhost() as amqp_url:
        try:
            await year.run(report, amqp_url, databases, schools, pupils, SEED, workdir)
        finally:
            await databases.drop_all()


async def suite(mode: str, reports: dict[str, Report], workdir: Path, with_10x: bool) -> None:
    if "morning" in reports:
        await run(mode, reports["morning"], workdir, with_10x)
    if "notifier" in reports:
        await notifier(mode, reports["notifier"], workdir)
    if "staff" in reports:
        await staff(mode, reports["staff"], workdir)
    if "wonde" in reports:
        await wonde(mode, reports["wonde"], workdir)
    if "deployed" in reports:
        await deployed(mode, reports["deployed"], workdir)
    if "year" in reports:
        await year_on(mode, reports["year"], workdir)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~1/20 size, under 2 minutes")
    parser.add_argument("--no-10x", action="store_true", help="skip the 10x memory run")
    parser.add_argument("--only", choices=["staff", "wonde", "deployed", "notifier", "year"],
                        help="run one entry alone (its section of results.md only)")
    args = parser.parse_args()
    # Services' warnings (e.g. a dead-lettered request) on stderr, not their info chatter.
    logging.basicConfig(level=logging.WARNING, format="  [%(name)s] %(message)s")
    mode = "quick" if args.quick else "full"
    schools, pupils = SIZES[mode]
    command = " ".join(["python -m bench", *sys.argv[1:]])
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = Report(mode=mode, command=command, started=started_at, machine=machine(),
                    size=f"{schools} schools, {pupils:,} pupils")
    staff_report = Report(mode=mode, command=command, started=started_at, machine=machine(),
                          size=f"{schools} schools", entry="staff pages",
                          ratio_to="the same data's API calls made directly (p50)")
    wonde_report = Report(mode=mode, command=command, started=started_at, machine=machine(),
                          size=f"{schools} schools, {pupils:,} pupils", entry="Wonde sync",
                          ratio_to="bare consume-and-ack of the same events")
    deployed_schools, deployed_pupils = as_deployed.SIZES[mode]
    deployed_report = Report(mode=mode, command=command, started=started_at, machine=machine(),
                             size=f"{deployed_schools} schools, {deployed_pupils:,} pupils",
                             entry="as deployed",
                             ratio_to="bare consume-and-ack of the same marks")
    year_report = Report(mode=mode, command=command, started=started_at, machine=machine(),
                         size=f"{schools} schools, {pupils:,} pupils", entry="a year on",
                         ratio_to="the day-1 morning in the same run")
    everything = {"morning": report, "staff": staff_report, "wonde": wonde_report,
                  "deployed": deployed_report}
    # The notifier's rates are part of the morning; `--only notifier` runs them alone. A year
    # of history takes minutes to load even at quick size: part of the full run, and of a
    # quick one only when asked for.
    alone = {"notifier": Report(mode=mode, command=command, started=started_at,
                                machine=machine(), size=f"{schools} schools, {pupils:,} pupils",
                                entry="notifier send rates",
                                ratio_to="the naive sequential loop"),
             "year": year_report}
    if mode == "full":
        everything["year"] = alone.pop("year")
    chosen = ({args.only: (everything | alone)[args.only]} if args.only else everything)
    reports = list(chosen.values())
    workdir = Path(tempfile.mkdtemp(prefix="absence-bench-"))
    started = time.perf_counter()
    try:
        asyncio.run(suite(mode, chosen, workdir, mode == "full" and not args.no_10x))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    reports[0].notes.append(f"Wall time of the run: {time.perf_counter() - started:.0f} s.")
    for each in reports:
        each.write()
        each.print_summary()
    if not all(each.ok for each in reports):
        print("bench: a correctness check failed (see MISMATCH above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
