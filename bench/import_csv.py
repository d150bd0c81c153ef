"""`python -m bench.import_csv [--quick]`: a school loaded from its MIS exports by
`python -m triage import-csv`'s code, through the real triage over HTTP: a 1,500-pupil roster
and a term of marks (about 70 school days, AM and PM), timed from reading the files to the
last mark applied. Triage runs in this process (scheduler off) on PostgreSQL and a fresh
virtual host; the import talks to it over loopback HTTP as it would to a deployed triage."""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import random
import tempfile
import time
from pathlib import Path

import httpx
from servicekit.clock import FrozenClock
from triage import csv_import
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.calendar import SchoolCalendar, Term
from triage.migrations import upgrade

from bench.infra import Databases, fresh_vhost, machine
from bench.report import Report
from bench.throughput import triage_settings
from tests.browser import served

SEED = 20261123
URN = "100001"
TOKEN = "bench-import-token-of-sufficient-length"
# Autumn term 2026 with its half-term: 70 school days.
TERMS = ({"start": "2026-09-03", "end": "2026-10-23"}, {"start": "2026-11-02", "end": "2026-12-18"})
SIZES = {"full": (1500, None), "quick": (150, 10)}  # pupils, school days (None: the term)
# A typical register: mostly present, some late, illness, authorised and unexplained.
CODES = ["/"] * 88 + ["L"] * 3 + ["I"] * 4 + ["M", "C", "O", "N", "G"]


def school_document() -> dict[str, object]:
    return {"urn": URN, "name": "Bench Academy", "calendar": {"terms": list(TERMS)},
            "staff": [{"role": "attendance_officer", "name": "Officer",
                       "email": "attendance@bench.example"}],
            "pupils": []}


def write_files(directory: Path, pupils: int, days: int | None) -> tuple[Path, Path, int]:
    """The roster and marks CSVs, as an MIS writes them (UK dates, national phone numbers)."""
    rng = random.Random(SEED)
    roster = directory / "pupils.csv"
    with roster.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["UPN", "Legal Forename", "Legal Surname", "Year", "Contact 1 Name",
                         "Contact 1 Relationship", "Contact 1 Mobile", "Contact 1 Email",
                         "Contact 2 Name", "Contact 2 Telephone"])
        for n in range(pupils):
            writer.writerow([f"B{n:012d}", f"Pupil{n}", "Bench", rng.choice(["R", *range(1, 7)]),
                             f"Parent {n}", "Mother", f"07700 9{n % 100000:05d}",
                             f"parent{n}@bench.example", f"Carer {n}",
                             f"01632 9{n % 100000:05d}"])
    calendar = SchoolCalendar(tuple(Term(dt.date.fromisoformat(t["start"]),
                                         dt.date.fromisoformat(t["end"])) for t in TERMS))
    school_days = calendar.school_days_in(calendar.terms[0].start, calendar.terms[-1].end)
    school_days = school_days[:days] if days else school_days
    marks = directory / "marks.csv"
    rows = 0
    with marks.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["UPN", "Date", "Session", "Mark", "Minutes Late"])
        for day in school_days:
            for n in range(pupils):
                for session, present in (("AM", "/"), ("PM", "\\")):
                    code = rng.choice(CODES)
                    code = present if code == "/" else code
                    writer.writerow([f"B{n:012d}", f"{day:%d/%m/%Y}", session, code,
                                     rng.randint(1, 20) if code == "L" else ""])
                    rows += 1
    return roster, marks, rows


async def run(mode: str, report: Report, workdir: Path) -> None:
    pupils, days = SIZES[mode]
    roster, marks, rows = write_files(workdir, pupils, days)
    report.notes.append(f"Files: {pupils:,} pupils, {rows:,} marks "
                        f"({rows // (2 * pupils)} school days x 2 sessions), seed {SEED}.")
    # The Monday after the term: every mark is in the past.
    clock = FrozenClock(dt.datetime(2026, 12, 21, 8, 0, tzinfo=dt.UTC))
    databases = Databases()
    with fresh_vhost() as amqp_url:
        try:
            name = await databases.create()
            service = TriageService(triage_settings(
                amqp_url, databases.url(name), api_token=TOKEN), clock, run_scheduler=False)
            await upgrade(service.engine)
            await service.start()
            try:
                await _import(service, report, roster, marks, rows, pupils, clock)
            finally:
                await service.stop()
        finally:
            await databases.drop_all()


async def _import(service: TriageService, report: Report, roster: Path, marks: Path,
                  rows: int, pupils: int, clock: FrozenClock) -> None:
    async with (served(triage_app(service)) as url,
                httpx.AsyncClient(base_url=url, timeout=300,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as client):
        response = await client.put(f"/api/v1/schools/{URN}", json=school_document())
        response.raise_for_status()
        out = io.StringIO()
        started = time.perf_counter()
        outcome = await csv_import.import_files(client, URN, roster, marks, clock, out=out)
        sent = time.perf_counter()
        assert service.consumer is not None
        await service.consumer.wait_settled(outcome.marks_sent, timeout=max(300.0, rows / 100))
        applied = time.perf_counter()
    report.check(f"every row valid and every mark sent ({outcome.marks_sent:,} of {rows:,})",
                 outcome.applied and not outcome.problems and outcome.marks_sent == rows)
    report.check(f"roster of {pupils:,} pupils stored",
                 outcome.roster is not None and outcome.roster["pupils"] == pupils)
    total = rows + pupils
    report.figure("CSV import: files read and checked, roster PUT, marks POSTed",
                  f"{sent - started:.1f} s", "", f"{total / (sent - started):,.0f} rows/s")
    report.figure("CSV import: wall time to the last mark applied", f"{applied - started:.1f} s",
                  "", f"{total / (applied - started):,.0f} rows/s ({pupils:,} pupils + "
                  f"{rows:,} marks); triage on PostgreSQL, POST /api/v1/events in batches of "
                  f"{csv_import.BATCH} over loopback HTTP")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.import_csv")
    parser.add_argument("--quick", action="store_true", help="150 pupils, 10 school days")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    report = Report(mode=f"import-{mode}",
                    command="python -m bench.import_csv" + (" --quick" if args.quick else ""),
                    started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    machine=machine(), size=f"{SIZES[mode][0]:,} pupils")
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run(mode, report, Path(workdir)))
    report.print_summary()
    report.write()
    if not report.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
