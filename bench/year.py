"""A year on (`python -m bench --only year`): the morning of the 190th school day, with the
school year before it already in the database, against the first morning of the same year.

Every other measurement starts on empty tables, which flatters any query that reads history
or any index that grows with it. Here a school year of marks, the deduplication log, the rate
counters, the threshold states and the first-day contacts of that year are generated and
loaded with COPY (the same rows the services write, without replaying 40 million events),
and the 190th morning is timed the same way as the first (`bench.throughput`), in the same
run, on PostgreSQL. Also reported: disk per pupil-year and per event, the peak memory of
`python -m triage` on that database, and a retention pass over more than a year of the
deduplication log."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from servicekit.clock import FrozenClock
from servicekit.database import make_engine
from servicekit.housekeeping import purge
from sqlalchemy import select
from triage.calendar import SchoolCalendar
from triage.housekeeping import received_events_cutoff, triage_purges
from triage.migrations import upgrade
from triage.models import scheduled_actions
from triage.policy import Policy
from triage.rates import Counts, school_year_start
from triage.rules import (
    attendance_stage1,
    la_referral,
    penalty_notice_threshold,
    persistent_absence,
    severe_absence,
)
from triage.rules.first_day_contact import ID as FIRST_DAY
from triage.rules.first_day_contact import dedup_key

from bench import processes, rosters
from bench.generator import LONDON, Authority, encode, first_day_absences, generate
from bench.infra import POSTGRES_DSN, Databases
from bench.report import Report
from bench.throughput import dead_lettered, triage_in_process, triage_settings

# England's 2026/27 school year as a county publishes it: six half-terms (bank holidays come
# off through the calendar, as they do in the service).
TERMS = [{"start": s, "end": e} for s, e in (
    ("2026-09-02", "2026-10-23"), ("2026-11-02", "2026-12-18"), ("2027-01-04", "2027-02-12"),
    ("2027-02-22", "2027-03-26"), ("2027-04-12", "2027-05-28"), ("2027-06-07", "2027-07-21"))]
CALENDAR = SchoolCalendar.from_document({"terms": TERMS})
SCHOOL_DAYS = CALENDAR.school_days_from(dt.date(2026, 9, 1), 190)
DAY_1, DAY_190 = SCHOOL_DAYS[0], SCHOOL_DAYS[-1]
HISTORY = SCHOOL_DAYS[:-1]
REGISTERS_CLOSE = dt.time(9, 25)
POLICY = {"first_day_contact": {"not_before": "00:00", "channels": ["sms"]}}

# Pupils' absence propensity, as weights: most rarely miss school, a fifth are persistently
# absent (>= 10%), a few severely; the mix averages about 7% of sessions, as nationally.
PROPENSITY = ((0.03, 0.70), (0.12, 0.22), (0.30, 0.08))
# An absence runs on: the chance that an absent pupil is absent the next school day too.
STAYS_ABSENT = 0.5
# Final codes of past absences (mostly explained by now; a few N still standing), and the
# share of episodes first recorded as N and amended later (two events for that mark).
PAST_CODES = (("I", 0.50), ("M", 0.08), ("C", 0.07), ("G", 0.08), ("O", 0.25), ("N", 0.02))
FIRST_RECORDED_N = 0.6
LATE = 0.02
AUTHORISED = {"I", "M", "C"}
THRESHOLDS = (attendance_stage1, persistent_absence, la_referral, severe_absence)
# Pairs of mornings (day 1, day 190) timed in one run, at quick size (one at full size, whose
# mornings last a minute and whose database copies take 25 GB each).
ROUNDS = 3
QUICK_PUPILS = 5_250
# A purge pass over this much of the deduplication log (more than the 400-day retention).
PURGE_HISTORY_DAYS = 460
# At most this many pupils' events per day in that log (the quick authority): a full-size
# authority's 460 days would be 70 million rows to generate for one rate.
PURGE_PUPILS = 5_250


def at(day: dt.date, time_of_day: dt.time = REGISTERS_CLOSE) -> dt.datetime:
    return dt.datetime.combine(day, time_of_day, LONDON)


def authority(schools: int, pupils: int, seed: int, day: dt.date) -> Authority:
    """The bench authority on one morning of the 2026/27 calendar (same pupils, same codes,
    same event ids whatever the day: the two mornings differ only in what came before)."""
    return generate(seed=seed, schools=schools, pupils=pupils, day=day,
                    recorded_from=at(day) - dt.timedelta(minutes=45), policy=POLICY,
                    terms=TERMS)


@dataclass
class Tables:
    """Rows for COPY, per table, in the column order of `COLUMNS`."""

    rows: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {name: [] for name in COLUMNS})


COLUMNS = {
    "marks": ("school_urn", "pupil_id", "date", "session", "code", "recorded_at", "event_id"),
    "received_events": ("event_id", "kind", "school_urn", "pupil_id", "payload", "received_at"),
    "attendance_counters": ("school_urn", "pupil_id", "year_start", "possible", "authorised",
                            "unauthorised", "updated_at"),
    "rule_states": ("school_urn", "pupil_id", "rule", "scope", "armed", "crossings",
                    "covered_until", "updated_at"),
    "scheduled_actions": ("dedup_key", "rule", "school_urn", "pupil_id", "date", "due_at",
                          "status", "reason", "created_at", "updated_at", "episode_start",
                          "request_id", "generation"),
    "decisions": ("rule", "school_urn", "pupil_id", "dedup_key", "outcome", "reason", "inputs",
                  "decided_at"),
}


@dataclass
class Pupil:
    """Where one pupil's year stands while the days are generated."""

    urn: str
    pupil_id: str
    starts: float  # the chance that an absence starts on a day after a present one
    absent: bool = False
    code: str = "/"
    authorised: int = 0
    unauthorised: int = 0
    # One entry per session of a code the penalty-notice rule counts.
    penalty_sessions: list[dt.date] = field(default_factory=list)


class History:
    """A school year of one authority's marks, generated and loaded a day at a time, in the
    order the service writes them (each pupil's marks spread over the year's pages, as in
    production), and never more than a day's rows in memory (2 x 105,000 at full size)."""

    def __init__(self, seed: int, morning: Authority) -> None:
        self._rng = random.Random(seed)
        self._ids = random.Random(seed + 2)  # never the mornings' ids (seed + 1)
        self._policy = Policy.model_validate(POLICY)
        self._penalty_codes = set(self._policy.penalty_notice.codes)
        self._pupils = [self._pupil(document["urn"], pupil["id"])
                        for document in morning.schools for pupil in document["pupils"]]
        self.events = 0

    def _pupil(self, urn: str, pupil_id: str) -> Pupil:
        rate = self._rng.choices([r for r, _ in PROPENSITY],
                                 weights=[w for _, w in PROPENSITY])[0]
        # Keeps the long-run share of absent days at `rate`, absences running on.
        return Pupil(urn, pupil_id, rate * (1 - STAYS_ABSENT) / (1 - rate))

    @property
    def absent_on_last_day(self) -> set[tuple[str, str]]:
        return {(p.urn, p.pupil_id) for p in self._pupils if p.absent}

    def day(self, day: dt.date) -> Tables:
        """Every pupil's AM and PM marks of one school day (and what they started)."""
        rng, tables = self._rng, Tables()
        # When each session's marks were taken and received: a few distinct times a day.
        times = {session: [_stamp(at(day, dt.time(9 if session == "AM" else 13, m)))
                           for m in range(0, 30, 3)] for session in ("AM", "PM")}
        for pupil in self._pupils:
            pupil.absent = rng.random() < (STAYS_ABSENT if pupil.absent else pupil.starts)
            if not pupil.absent:
                pupil.code = "L" if rng.random() < LATE else "/"
            elif pupil.code in ("/", "L"):  # an episode starts
                pupil.code = rng.choices([c for c, _ in PAST_CODES],
                                         weights=[w for _, w in PAST_CODES])[0]
                if rng.random() < FIRST_RECORDED_N:
                    self._first_day_contact(tables, pupil, day, rng.choice(times["AM"]))
            for session in ("AM", "PM"):
                self._mark(tables, pupil, day, session,
                           "/" if session == "PM" and pupil.code == "L" else pupil.code,
                           rng.choice(times[session]))
            if pupil.code in AUTHORISED:
                pupil.authorised += 2
            elif pupil.absent:
                pupil.unauthorised += 2
            if pupil.absent and pupil.code in self._penalty_codes:
                pupil.penalty_sessions += [day, day]
        return tables

    def counters(self) -> Tables:
        """The rate counters and threshold states the year's marks leave behind."""
        tables = Tables()
        updated = at(HISTORY[-1], dt.time(16))
        for pupil in self._pupils:
            counts = Counts(2 * len(HISTORY), pupil.authorised, pupil.unauthorised)
            tables.rows["attendance_counters"].append(
                (pupil.urn, pupil.pupil_id, school_year_start(DAY_1), *counts_tuple(counts),
                 updated))
            for module in THRESHOLDS:
                # A pupil over a line was told once (disarmed, one crossing); the others are
                # armed, the state's default, and have no row.
                if counts.possible >= self._policy.min_possible_sessions and \
                        module.threshold(self._policy).crossed(counts):
                    tables.rows["rule_states"].append(
                        (pupil.urn, pupil.pupil_id, module.ID, str(DAY_1.year), False, 1, None,
                         updated))
            if (penalty := self._penalty_state(pupil)) is not None:
                crossings, covered = penalty
                tables.rows["rule_states"].append(
                    (pupil.urn, pupil.pupil_id, penalty_notice_threshold.ID, "", True,
                     crossings, covered, updated))
        return tables

    def _penalty_state(self, pupil: Pupil) -> tuple[int, dt.date] | None:
        """The windows the penalty-notice rule alerted on during the year, as it found them
        (each window's sessions never counted again), and the last window's end."""
        crossings, covered = 0, None
        while (window := penalty_notice_threshold.first_window(
                pupil.penalty_sessions, covered, CALENDAR, self._policy)) is not None:
            crossings, covered = crossings + 1, window.end
        return None if covered is None else (crossings, covered)

    def _mark(self, tables: Tables, pupil: Pupil, day: dt.date, session: str, code: str,
              stamp: tuple[dt.datetime, str]) -> None:
        when, iso = stamp
        event_id = _uuid(self._ids)
        tables.rows["marks"].append((pupil.urn, pupil.pupil_id, day, session, code, when,
                                     event_id))
        tables.rows["received_events"].append(
            (event_id, "register.mark/v1", pupil.urn, pupil.pupil_id,
             _payload(event_id, pupil.urn, pupil.pupil_id, day, session, code, iso), when))
        self.events += 1

    def _first_day_contact(self, tables: Tables, pupil: Pupil, day: dt.date,
                           stamp: tuple[dt.datetime, str]) -> None:
        """The first-day contact an N mark started (requested, as it was) and its decision;
        the N itself is in the deduplication log, replaced in `marks` by the later code."""
        when, iso = stamp
        event_id = _uuid(self._ids)
        urn, pupil_id = pupil.urn, pupil.pupil_id
        tables.rows["received_events"].append(
            (event_id, "register.mark/v1", urn, pupil_id,
             _payload(event_id, urn, pupil_id, day, "AM", "N", iso), when))
        self.events += 1
        key = dedup_key(urn, pupil_id, day)
        reason = "unexplained absence on the first day of an episode"
        tables.rows["scheduled_actions"].append(
            (key, FIRST_DAY, urn, pupil_id, day, when, "requested", reason, when, when, day,
             key, 0))
        tables.rows["decisions"].append(
            (FIRST_DAY, urn, pupil_id, key, "scheduled", reason,
             json.dumps({"date": day.isoformat(), "codes": {"AM": "N"}}), when))


def counts_tuple(counts: Counts) -> tuple[int, int, int]:
    return counts.possible, counts.authorised, counts.unauthorised


def _stamp(when: dt.datetime) -> tuple[dt.datetime, str]:
    return when, when.astimezone(dt.UTC).isoformat()


def _uuid(rng: random.Random) -> str:
    # uuid.UUID's own formatting took a fifth of the generation time.
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _payload(event_id: str, urn: str, pupil_id: str, day: dt.date, session: str, code: str,
             recorded_at: str) -> str:
    # The JSON `model_dump_json` writes for a mark, formatted directly: 40 million of them.
    return (f'{{"schema":"register.mark/v1","event_id":"{event_id}","school_urn":"{urn}",'
            f'"pupil_id":"{pupil_id}","date":"{day}","session":"{session}",'
            f'"code":"{code}","recorded_at":"{recorded_at}",'
            f'"minutes_late":null,"comment":null,"source":null}}')


def batches(history: History) -> Iterator[Tables]:
    """One day's rows at a time; the counters only once every day has been generated."""
    for day in HISTORY:
        yield history.day(day)
    yield history.counters()


async def load_history(conn: asyncpg.Connection, history: History) -> int:
    """COPY the year a school day at a time, then the counters; returns the rows written."""
    written = 0
    for tables in batches(history):
        for name, rows in tables.rows.items():
            if rows:
                await conn.copy_records_to_table(name, columns=COLUMNS[name], records=rows)
                written += len(rows)
    return written


async def table_sizes(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY bytes DESC")
    return {row["relname"]: row["bytes"] for row in rows}


async def drop(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def clock_offset(to: dt.datetime) -> Iterator[None]:
    """Services started inside run on a clock set to `to` (CLOCK_OFFSET_SECONDS, which the
    bench's process helpers pass on from this environment)."""
    os.environ["CLOCK_OFFSET_SECONDS"] = str((to - dt.datetime.now(dt.UTC)).total_seconds())
    try:
        yield
    finally:
        del os.environ["CLOCK_OFFSET_SECONDS"]


async def first_day_contacts(database_url: str, day: dt.date) -> set[tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(scheduled_actions.c.school_urn, scheduled_actions.c.pupil_id).where(
                    scheduled_actions.c.rule == FIRST_DAY, scheduled_actions.c.date == day,
                    # An N amended away before its contact was due cancelled it.
                    scheduled_actions.c.status != "cancelled"))
            return {(urn, pupil_id) for urn, pupil_id in rows.all()}
    finally:
        await engine.dispose()


async def morning(report: Report, amqp_url: str, databases: Databases, database: str,
                  label: str, day_authority: Authority,
                  expected: set[tuple[str, str]]) -> float:
    """One morning's burst through triage in-process, timed as `bench.throughput` does;
    checks the first-day contacts it scheduled are exactly the expected ones."""
    bodies = encode(day_authority.events())
    url = databases.url(database)
    rate, service = await triage_in_process(amqp_url, url, FrozenClock(at(day_authority.day)),
                                            bodies)
    await service.stop()
    scheduled = await first_day_contacts(url, day_authority.day)
    report.check(f"{label}: first-day contacts scheduled = expected ({len(scheduled):,} of "
                 f"{len(expected):,}; {len(scheduled - expected)} extra, "
                 f"{len(expected - scheduled)} missing)", scheduled == expected)
    dead = await dead_lettered(amqp_url)
    report.check(f"{label}: no event dead-lettered ({dead})", dead == 0)
    return rate.per_second


async def run(report: Report, amqp_url: str, databases: Databases, schools: int, pupils: int,
              seed: int, workdir: Path) -> None:
    first = authority(schools, pupils, seed, DAY_1)
    last = authority(schools, pupils, seed, DAY_190)
    template = await databases.create()
    await rosters.load(databases.url(template), first, at(DAY_1) - dt.timedelta(days=7))
    history = History(seed, last)
    year = await databases.create(template)
    conn = await databases.connect(year)
    try:
        started = time.perf_counter()
        written = await load_history(conn, history)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        # What autovacuum does to a table after a load (statistics, the visibility map).
        await conn.execute("VACUUM ANALYZE")
        vacuumed = time.perf_counter() - started
    finally:
        await conn.close()
    report.figure("history loaded (COPY)", f"{written:,} rows in {loaded:.0f} s",
                  note=f"{history.events:,} events over {len(HISTORY)} school days "
                       f"({DAY_1} to {HISTORY[-1]}), {written / loaded:,.0f} rows/s; "
                       f"then VACUUM ANALYZE {vacuumed:.0f} s")

    # Every first-day N, not only those with a phone that may be texted: a family nobody may
    # contact still gets its action, raised as family_unreachable when it falls due.
    expected_first = first_day_absences(first)
    # A pupil absent on day 189 is in an episode already: day 190 is not its first day.
    expected_last = first_day_absences(last) - history.absent_on_last_day
    # Mornings in pairs (day 1, then day 190, each on a fresh copy), the ratio the median of
    # the pairs': one quick-size morning lasts seconds, and on this shared machine one pair
    # alone swung the ratio by twenty points.
    pairs = []
    rounds = ROUNDS if pupils <= QUICK_PUPILS else 1
    for round_ in range(rounds):
        copy = await databases.create(template)
        day1 = await morning(report, amqp_url, databases, copy, f"day 1 ({DAY_1})", first,
                             expected_first)
        await drop(copy)
        day_190_copy = await databases.create(year)
        day190 = await morning(report, amqp_url, databases, day_190_copy,
                               f"day 190 ({DAY_190})", last, expected_last)
        if round_ < rounds - 1:
            await drop(day_190_copy)  # a full-size copy is 25 GB: one at a time
        pairs.append((day1, day190))
    day1, day190 = (statistics.median(rates) for rates in zip(*pairs, strict=True))
    ratio = statistics.median(late / early for early, late in pairs)
    report.figure("triage, day-1 morning (empty history)", f"{day1:,.0f} marks/s", "100%",
                  f"median of {rounds} ({', '.join(f'{a:,.0f}' for a, _ in pairs)}); "
                  f"{len(first.events()):,} events, in-process, PostgreSQL")
    report.figure(f"triage, day-190 morning ({history.events:,} events of history)",
                  f"{day190:,.0f} marks/s", f"{100 * ratio:.0f}%",
                  f"median of {rounds} ({', '.join(f'{b:,.0f}' for _, b in pairs)}), each "
                  "after a day-1 morning; the ratio is the median of the pairs' ratios")
    report.target("day-190 morning >= 0.9x the day-1 morning", f"{ratio:.2f}x", ratio >= 0.9)

    await disk(report, databases, day_190_copy, pupils, history.events + len(last.events()))
    # Last, on the loaded database itself: no copy is made from it after this.
    await memory(report, amqp_url, databases, year, last, workdir)
    await retention(report, databases, first, seed)


async def disk(report: Report, databases: Databases, database: str, pupils: int,
               events: int) -> None:
    conn = await databases.connect(database)
    try:
        sizes = await table_sizes(conn)
    finally:
        await conn.close()
    total = sum(sizes.values())
    largest = ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in
                        list(sizes.items())[:5])
    report.figure("disk after day 190: per pupil-year / per event",
                  f"{total / pupils / 1024:,.1f} KiB / {total / events:,.0f} B",
                  note=f"pg_total_relation_size of every table, {total / 2**30:.2f} GiB in all "
                       f"for {events:,} events; largest: {largest}")


async def memory(report: Report, amqp_url: str, databases: Databases, database: str,
                 day_authority: Authority, workdir: Path) -> None:
    with clock_offset(at(DAY_190)):
        run = await processes.triage_processes(
            amqp_url, databases, database, encode(day_authority.events()), 1, workdir,
            received_before=await received_count(databases, database))
    peak = run.peaks_mb[0]
    report.figure("peak RSS of `python -m triage` on the day-190 database", f"{peak:.0f} MB",
                  note=f"VmHWM; {run.count:,} events at {run.per_second:,.0f} marks/s, "
                       "scheduler running, clock set to day 190 09:25")
    report.target("triage < 500 MB on the day-190 database", f"{peak:.0f} MB", peak < 500)


async def received_count(databases: Databases, database: str) -> int:
    conn = await databases.connect(database)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM received_events"))
    finally:
        await conn.close()


async def retention(report: Report, databases: Databases, day_authority: Authority,
                    seed: int) -> None:
    """A housekeeping pass over PURGE_HISTORY_DAYS of the deduplication log (one school day's
    events per school day), then a second pass with nothing left to do."""
    now = at(DAY_190)
    database = await databases.create()
    settings = triage_settings("amqp://unused", databases.url(database))
    cutoff = received_events_cutoff(settings, now)
    first_day = (now - dt.timedelta(days=PURGE_HISTORY_DAYS)).date()
    days = [first_day + dt.timedelta(days=n) for n in range(PURGE_HISTORY_DAYS)
            if (first_day + dt.timedelta(days=n)).weekday() < 5]
    engine = make_engine(databases.url(database))
    try:
        await upgrade(engine)
        conn = await databases.connect(database)
        rng = random.Random(seed + 3)
        try:
            for day in days:
                when, iso = _stamp(at(day, dt.time(9)))
                rows = []
                for mark in day_authority.marks[:PURGE_PUPILS]:
                    for session in ("AM", "PM"):
                        event_id = _uuid(rng)
                        rows.append((event_id, "register.mark/v1", mark["school_urn"],
                                     mark["pupil_id"], _payload(
                                         event_id, mark["school_urn"], mark["pupil_id"], day,
                                         session, mark["code"], iso), when))
                await conn.copy_records_to_table("received_events",
                                                 columns=COLUMNS["received_events"],
                                                 records=rows)
            await conn.execute("VACUUM ANALYZE received_events")
            before = await conn.fetchval("SELECT count(*) FROM received_events")
        finally:
            await conn.close()
        (target,) = [p for p in triage_purges(settings, now) if p.name == "received_events"]
        started = time.perf_counter()
        purged = await purge(engine, target)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = await purge(engine, target)
        idle = time.perf_counter() - started
        conn = await databases.connect(database)
        try:
            oldest = await conn.fetchval("SELECT min(received_at) FROM received_events")
        finally:
            await conn.close()
    finally:
        await engine.dispose()
    report.figure("purge of the deduplication log, one pass",
                  f"{purged:,} rows in {seconds:.1f} s",
                  note=f"{purged / seconds:,.0f} rows/s in batches of 1,000; {before:,} rows "
                       f"over {PURGE_HISTORY_DAYS} days, retention {settings.received_event_days}"
                       f" days; the next pass (nothing due) {idle * 1000:,.0f} ms")
    within = again == 0 and oldest is not None and oldest >= cutoff
    report.check(f"after the purge nothing is older than the retention (oldest "
                 f"{oldest:%Y-%m-%d}, cutoff {cutoff:%Y-%m-%d})", within)
