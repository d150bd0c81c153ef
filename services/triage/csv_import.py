"""`python -m triage import-csv`: a school's roster and register marks from the CSV files an MIS
exports (docs/contract.md §3 "Loading a school from CSV").

A client of triage's HTTP API like any other: the roster goes in with `PUT /api/v1/schools/{urn}`
(the school's stored document with its pupils replaced) and the marks with `POST /api/v1/events`
in batches of at most 1,000, so they are the same events, judged the same way, as every other
source's. Every row is checked first, with the rules triage applies (the same models, the same
calendar); nothing is sent while any row is bad, unless `--apply-valid-rows` is given."""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from broker_messages.events import RegisterMark
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from servicekit.clock import Clock

from triage.ingest import rejection
from triage.school_document import Pupil
from triage.schools import context_of

BATCH = 1000  # POST /api/v1/events takes at most this many events
IN_FLIGHT = 8  # batches sent at once
MAX_CONTACTS = 10
SOURCE = "csv-import"

# Column names as MIS exports write them; a column is matched ignoring case, spaces and
# punctuation, so "Legal Surname", "legal_surname" and "LEGAL SURNAME" are one column.
PUPIL_ID = ("UPN", "Pupil ID", "Admission No")
ROSTER_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": PUPIL_ID,
    "given_name": ("Legal Forename", "Forename", "First Name"),
    "family_name": ("Legal Surname", "Surname", "Last Name"),
    "year_group": ("Year", "Year Group", "NC Year"),
    "looked_after": ("Looked After", "In Care"),
    "ehcp": ("EHCP", "EHC Plan"),
}
SOCIAL_WORKER_COLUMNS = {"name": "Social Worker Name", "email": "Social Worker Email",
                         "phone": "Social Worker Phone"}
# `Contact 1 Name`, `Contact 1 Mobile`, …: a contact is there when its name is.
CONTACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("Name",),
    "relationship": ("Relationship",),
    "priority": ("Priority",),
    "phone": ("Mobile", "Phone", "Telephone"),
    "email": ("Email",),
    "language": ("Language",),
    "no_contact": ("No Contact",),
    "attendance_updates": ("Attendance Updates",),
}
MARK_COLUMNS: dict[str, tuple[str, ...]] = {
    "pupil_id": PUPIL_ID,
    "date": ("Date",),
    "session": ("Session",),
    "code": ("Mark", "Code"),
    "minutes_late": ("Minutes Late",),
    "comment": ("Comment", "Comments"),
    "recorded_at": ("Recorded At",),
}
_REQUIRED_ROSTER = ("id", "given_name", "family_name")
_REQUIRED_MARKS = ("pupil_id", "date", "session", "code")
_YES = {"y", "yes", "true", "1"}
_NO = {"", "n", "no", "false", "0"}


def _key(column: str) -> str:
    return re.sub(r"[^a-z0-9]", "", column.lower())


@dataclass
class Problem:
    file: str
    line: int
    msg: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.msg}"


@dataclass
class Rows:
    """A file's rows that passed, keyed by the line each started on, and every problem."""

    valid: dict[int, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _lines(handle: TextIO) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data row with the line it starts on, its columns keyed by `_key`."""
    reader = csv.reader(handle)
    header = [_key(name) for name in next(reader, [])]
    start = reader.line_num + 1
    for values in reader:
        if any(value.strip() for value in values):
            yield start, {name: value.strip() for name, value in zip(header, values, strict=False)}
        start = reader.line_num + 1


def _column(row: dict[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """(column name, value) of the first of `names` the row has a value for."""
    for name in names:
        if row.get(_key(name)):
            return name, row[_key(name)]
    return None


def _missing_columns(path: Path, header: set[str], columns: dict[str, tuple[str, ...]],
                     required: tuple[str, ...]) -> list[Problem]:
    return [Problem(path.name, 1, f"no {' / '.join(columns[name])} column")
            for name in required if not any(_key(c) in header for c in columns[name])]


def _header(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return {_key(name) for name in next(csv.reader(handle), [])}


def _flag(value: str) -> bool | str:
    lowered = value.lower()
    return True if lowered in _YES else False if lowered in _NO else value


# --- the roster ----------------------------------------------------------------------------


def _pupil_fields(row: dict[str, str]) -> tuple[dict[str, Any], dict[tuple[Any, ...], str]]:
    """A roster row as a pupil record, and which column each field came from."""
    record: dict[str, Any] = {}
    columns: dict[tuple[Any, ...], str] = {}
    for name, aliases in ROSTER_COLUMNS.items():
        if (found := _column(row, aliases)) is not None:
            columns[(name,)] = found[0]
            record[name] = _flag(found[1]) if name in ("looked_after", "ehcp") else found[1]
    worker = {name: row[_key(column)] for name, column in SOCIAL_WORKER_COLUMNS.items()
              if row.get(_key(column))}
    if worker:
        record["social_worker"] = worker
        columns.update({("social_worker", name): SOCIAL_WORKER_COLUMNS[name] for name in worker})
    contacts: list[dict[str, Any]] = []
    for number in range(1, MAX_CONTACTS + 1):
        contact: dict[str, Any] = {}
        for name, suffixes in CONTACT_COLUMNS.items():
            found = _column(row, tuple(f"Contact {number} {s}" for s in suffixes))
            if found is None:
                continue
            columns[("contacts", len(contacts), name)] = found[0]
            contact[name] = (_flag(found[1]) if name in ("no_contact", "attendance_updates")
                             else found[1])
        if contact.get("name"):
            contact.setdefault("priority", number)
            contacts.append(contact)
    record["contacts"] = contacts
    return record, columns


def read_roster(path: Path) -> Rows:
    """Every pupil row checked as triage checks an upload (the same model)."""
    rows = Rows()
    rows.problems = _missing_columns(path, _header(path), ROSTER_COLUMNS, _REQUIRED_ROSTER)
    if rows.problems:
        return rows
    seen: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in _lines(handle):
            record, columns = _pupil_fields(row)
            try:
                pupil = Pupil.model_validate(record)
            except ValidationError as error:
                for problem in error.errors(include_url=False, include_input=False):
                    column = columns.get(tuple(problem["loc"]), ".".join(map(str, problem["loc"])))
                    who = f"pupil {record['id']}, " if record.get("id") else ""
                    msg = problem["msg"].removeprefix("Value error, ")
                    rows.problems.append(Problem(path.name, line, f"{who}{column}: {msg}"))
                continue
            if pupil.id in seen:
                rows.problems.append(Problem(path.name, line, f"pupil {pupil.id} is also on "
                                             f"line {seen[pupil.id]}"))
                continue
            seen[pupil.id] = line
            rows.valid[line] = pupil
    return rows


def bad_roster_ids(path: Path, rows: Rows) -> set[str]:
    """Pupil ids on the roster's bad lines: with `--apply-valid-rows` they keep the record
    already stored, rather than leaving the roll because their row could not be read."""
    bad_lines = {problem.line for problem in rows.problems}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return {found[1] for line, row in _lines(handle) if line in bad_lines
                if (found := _column(row, PUPIL_ID)) is not None}


# --- the marks -----------------------------------------------------------------------------


def _date(value: str) -> str:
    """ISO (`2026-11-23`) or as UK exports write dates (`23/11/2026`)."""
    try:
        return dt.datetime.strptime(value, "%d/%m/%Y").date().isoformat()
    except ValueError:
        return value


def _event(urn: str, row: dict[str, str], recorded_at: str) -> dict[str, Any]:
    fields = {name: found[1] for name, aliases in MARK_COLUMNS.items()
              if (found := _column(row, aliases)) is not None}
    event: dict[str, Any] = {
        "schema": "register.mark/v1", "school_urn": urn, "source": SOURCE,
        "pupil_id": fields.get("pupil_id", ""), "date": _date(fields.get("date", "")),
        "session": fields.get("session", "").upper(), "code": fields.get("code", ""),
        "recorded_at": fields.get("recorded_at") or recorded_at,
        "minutes_late": fields.get("minutes_late") or None,
        "comment": fields.get("comment") or None,
    }
    # The same row imported at the same moment is the same event (a retried import is a
    # duplicate, not a second mark).
    digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
    return {**event, "event_id": f"csv-{digest[:40]}"}


def read_marks(path: Path, document: dict[str, Any], roster: set[str],
               now: dt.datetime) -> Rows:
    """Every mark row checked as triage will judge it: the event schema, a pupil on the
    roster, a school day of this school, not in the future."""
    rows = Rows()
    rows.problems = _missing_columns(path, _header(path), MARK_COLUMNS, _REQUIRED_MARKS)
    if rows.problems:
        return rows
    context = context_of(document)
    seen: dict[tuple[str, dt.date, str], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in _lines(handle):
            try:
                event = RegisterMark.model_validate(_event(document["urn"], row,
                                                           now.isoformat()))
            except ValidationError as error:
                for problem in error.errors(include_url=False, include_input=False):
                    where = ".".join(map(str, problem["loc"]))
                    column = MARK_COLUMNS.get(where, (where,))[0]
                    msg = problem["msg"].removeprefix("Value error, ")
                    rows.problems.append(Problem(path.name, line, f"{column}: {msg}"))
                continue
            why = rejection(event, context, now)
            if why is None and event.pupil_id not in roster:
                why = f"pupil {event.pupil_id} is not on the school's roster"
            slot = (event.pupil_id, event.date, event.session)
            if why is None and slot in seen:
                why = (f"pupil {event.pupil_id} {event.date} {event.session} is also on "
                       f"line {seen[slot]}")
            if why is not None:
                rows.problems.append(Problem(path.name, line, why))
                continue
            seen[slot] = line
            rows.valid[line] = event
    return rows


# --- sending -------------------------------------------------------------------------------


class ImportFailed(Exception):
    """Triage refused a request; nothing after it was sent."""


def _roster_document(document: dict[str, Any], pupils: list[Pupil],
                     kept: set[str]) -> dict[str, Any]:
    """The stored document with the file's pupils, and the stored records of `kept`."""
    stored = {record["id"]: record for record in document.get("pupils", [])}
    records = [pupil.model_dump(mode="json") for pupil in pupils]
    return {**document, "pupils": records + [stored[i] for i in sorted(kept)]}


async def _put_roster(client: httpx.AsyncClient, document: dict[str, Any],
                      allow_removals: bool) -> dict[str, Any]:
    response = await client.put(f"/api/v1/schools/{document['urn']}", json=document,
                                params={"allow_removals": "true"} if allow_removals else None)
    if response.status_code != 200:
        raise ImportFailed(f"roster refused ({response.status_code}): {_detail(response)}")
    answer: dict[str, Any] = response.json()
    return answer


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:500]
    if isinstance(detail, list):
        return "; ".join(str(item.get("msg", item)) for item in detail)
    if isinstance(detail, dict):
        return str(detail.get("msg", detail))
    return str(detail)


async def _post_marks(client: httpx.AsyncClient, name: str, marks: dict[int, RegisterMark],
                      progress: Callable[[int], object]) -> tuple[int, list[Problem]]:
    """Batches of at most `BATCH`, `IN_FLIGHT` at a time (triage publishes each event with a
    broker confirm, so one batch at a time waits on the broker's round trips in turn); an
    item triage still refuses is reported by its line."""
    lines = list(marks)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def send(batch: list[int]) -> tuple[int, list[Problem]]:
        body = [marks[line].model_dump(mode="json", by_alias=True) for line in batch]
        async with slots:
            response = await client.post("/api/v1/events", json=body)
        if response.status_code not in (202, 422):
            raise ImportFailed(f"marks refused ({response.status_code}): {_detail(response)}")
        answer = response.json()
        refused = []
        for item in answer.get("detail", []) if response.status_code == 422 else []:
            index = item["loc"][1] if len(item["loc"]) > 1 else 0
            line = batch[index] if isinstance(index, int) and index < len(batch) else batch[0]
            refused.append(Problem(name, line, str(item["msg"])))
        progress(len(batch))
        return len(answer.get("accepted", [])), refused

    sent = await asyncio.gather(*(send(lines[start:start + BATCH])
                                  for start in range(0, len(lines), BATCH)))
    return (sum(accepted for accepted, _ in sent),
            sorted((p for _, refused in sent for p in refused), key=lambda p: p.line))


@dataclass
class Outcome:
    problems: list[Problem]
    applied: bool
    roster: dict[str, Any] | None = None
    marks_sent: int = 0

    @property
    def exit_code(self) -> int:
        return 0 if self.applied else 1


async def import_files(client: httpx.AsyncClient, urn: str, roster_path: Path | None,
                       marks_path: Path | None, clock: Clock, *, apply_valid_rows: bool = False,
                       allow_removals: bool = False, out: TextIO | None = None) -> Outcome:
    """Check both files, then (when every row is good, or `apply_valid_rows`) send them."""
    out = out or sys.stdout
    response = await client.get(f"/api/v1/schools/{urn}")
    if response.status_code != 200:
        raise ImportFailed(f"school {urn} ({response.status_code}): {_detail(response)}; "
                           "upload its document (calendar, staff) before importing")
    document: dict[str, Any] = response.json()
    now = clock.now()
    stored = {record["id"] for record in document.get("pupils", [])}
    roster = read_roster(roster_path) if roster_path is not None else None
    kept = (bad_roster_ids(roster_path, roster) & stored
            - {pupil.id for pupil in roster.valid.values()}
            if roster_path is not None and roster is not None else set())
    known = ({pupil.id for pupil in roster.valid.values()} | kept if roster is not None
             else stored)
    marks = read_marks(marks_path, document, known, now) if marks_path is not None else None
    problems = [*(roster.problems if roster else []), *(marks.problems if marks else [])]
    for problem in problems:
        print(problem, file=out)
    if problems and not apply_valid_rows:
        print(f"{len(problems)} problem(s): nothing imported (fix the rows, or give "
              "--apply-valid-rows to import the rest)", file=out)
        return Outcome(problems, applied=False)
    outcome = Outcome(problems, applied=True)
    if roster is not None:
        outcome.roster = await _put_roster(
            client, _roster_document(document, list(roster.valid.values()), kept),
            allow_removals)
        print(f"roster: {outcome.roster['pupils']} pupils, {outcome.roster['added']} joined, "
              f"{outcome.roster['left']} left", file=out)
    if marks_path is not None and marks is not None and marks.valid:
        with Progress(console=Console(file=out), disable=not out.isatty()) as bar:
            task = bar.add_task("marks", total=len(marks.valid))
            sent, refused = await _post_marks(client, marks_path.name, marks.valid,
                                              lambda done: bar.advance(task, done))
        outcome.marks_sent = sent
        outcome.problems += refused
        for problem in refused:
            print(problem, file=out)
        print(f"marks: {sent} sent", file=out)
    if problems:
        print(f"{len(problems)} row(s) with problems were left out", file=out)
    return outcome


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m triage import-csv",
        description="Load a school's roster and register marks from MIS CSV exports through "
                    "triage's API (the key: API_TOKEN, or one with schools:write and "
                    "marks:write).")
    parser.add_argument("--school", required=True, help="the school's URN (uploaded already)")
    parser.add_argument("--roster", type=Path, help="pupils CSV (replaces the roster)")
    parser.add_argument("--marks", type=Path, help="register marks CSV")
    parser.add_argument("--apply-valid-rows", action="store_true",
                        help="import the good rows even when some are bad")
    parser.add_argument("--allow-removals", action="store_true",
                        help="let the roster take more than half of the pupils off roll")
    parser.add_argument("--url", default="http://127.0.0.1:8001", help="triage's base URL")
    return parser


async def command(argv: list[str], key: str, clock: Clock) -> int:
    args = _parser().parse_args(argv)
    if args.roster is None and args.marks is None:
        print("error: give --roster, --marks or both", file=sys.stderr)
        return 2
    async with httpx.AsyncClient(base_url=args.url, timeout=120,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        try:
            outcome = await import_files(client, args.school, args.roster, args.marks, clock,
                                         apply_valid_rows=args.apply_valid_rows,
                                         allow_removals=args.allow_removals)
        except ImportFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return outcome.exit_code
