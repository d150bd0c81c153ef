"""bench "staff pages": the server time of the staff app's two heaviest pages on a loaded
morning, through the real app (signed-in session cookie, its own database) calling triage
and the notifier in-process (`staff.app.build(transports=...)`), on SQLite and PostgreSQL.

- Today (`/schools/{urn}/today`) for a 1,500-pupil school: triage's absences, the notifier's
  notifications and replies since midnight.
- The persistent-absence list (`/lists?list=persistent`) for that school's officer and for a
  local authority officer of every school in the run (300; 15 quick).

The baseline, measured in the same run on the same data: the service calls each page makes,
made directly with the same key (the page's ratio to them is what the staff app adds: its
session, the rendering), and the staff app's `/healthz` (the floor of a request through it).

The morning is written straight into the services' tables (bulk inserts, not the broker):
the page time is what is measured here, not ingest, which the rest of the suite measures.
The rows are those the services would hold at 11:00 on a Monday: this morning's AM marks
(amendments applied, ~2% of present pupils' marks still missing), a school year's counters
(~12% persistently absent), a `requested` first-day action per unexplained absence, a
notification per first-day contact (siblings merged) and replies for some. Not loaded: the
year's individual marks (the counters stand for them), so the list's penalty-notice check
reads only this morning's marks for its candidates."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from notifier.migrations import upgrade as upgrade_notifier
from notifier.models import notifications
from notifier.models import replies as notifier_replies
from notifier.settings import NotifierSettings
from pydantic import SecretStr
from servicekit.clock import FrozenClock
from servicekit.keys import Scope
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from staff.access import Role
from staff.app import build, create_app, migrate
from staff.settings import StaffSettings
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.migrations import upgrade as upgrade_triage
from triage.models import attendance_counters, marks, scheduled_actions
from triage.models import replies as parent_replies
from triage.rates import school_year_start
from triage.rules import first_day_contact
from triage.settings import TriageSettings

from bench import rosters
from bench.generator import LONDON, Authority, expected_first_day_sms, generate, sibling_groups
from bench.report import Report

SCHOOL_PUPILS = 1_500
FIRST_URN = 300_000  # the 1,500-pupil school; the authority's other schools follow it
MONDAY = dt.date(2026, 11, 23)
REGISTERS_FROM = dt.datetime(2026, 11, 23, 8, 40, tzinfo=LONDON)
NOW = dt.datetime(2026, 11, 23, 11, 0, tzinfo=LONDON)  # registers closed, contacts made
MISSING_RATE = 0.02  # present pupils whose AM mark has not come in yet
REPLY_RATE = 0.30  # contacted families who have replied
PERSISTENT_RATE = 0.12  # pupils absent 10% or more of this year's sessions
SEVERE_SHARE = 0.08  # of those, absent 50% or more
POSSIBLE = 110  # sessions so far this school year (1 Sep - 23 Nov, less half-term)
WARM_UP = 2  # requests before timing: the school cache, the statements' first compile
PASSWORD = "bench password, long enough"
TRIAGE_SCOPES = [Scope.TIMELINE_READ, Scope.TASKS_READ, Scope.TASKS_WRITE, Scope.MARKS_WRITE]
NOTIFIER_SCOPES = [Scope.NOTIFICATIONS_READ, Scope.REPLIES_READ]


@dataclass(frozen=True)
class Timing:
    seconds: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def ms(self) -> str:
        return f"{self.p50 * 1000:.0f} / {self.p95 * 1000:.0f} ms"


def authority(schools: int, pupils_per_school: int, seed: int) -> Authority:
    """The 1,500-pupil school first, then `schools - 1` of the suite's usual size."""
    big = generate(seed=seed, schools=1, pupils=SCHOOL_PUPILS, day=MONDAY,
                   recorded_from=REGISTERS_FROM, first_urn=FIRST_URN)
    if schools == 1:
        return big
    rest = generate(seed=seed + 2, schools=schools - 1, pupils=pupils_per_school * (schools - 1),
                    day=MONDAY, recorded_from=REGISTERS_FROM, first_urn=FIRST_URN + 1)
    return Authority(day=MONDAY, schools=big.schools + rest.schools,
                     marks=big.marks + rest.marks, amendments=big.amendments + rest.amendments)


@dataclass(frozen=True)
class Morning:
    """The rows to insert, by table, and what the pages must then show."""

    triage: dict[Table, list[dict[str, Any]]]
    notifier: dict[Table, list[dict[str, Any]]]
    to_follow_up: int  # the big school's Today rows: N marks and missing marks
    persistent: dict[str, int]  # per school


def morning(authority: Authority, seed: int) -> Morning:
    rng = random.Random(seed)
    now = NOW.astimezone(dt.UTC)
    codes = authority.final_codes()
    recorded = {(e["school_urn"], e["pupil_id"]): e for e in authority.events()}
    missing = {key for key, code in codes.items()
               if code in ("/", "L") and rng.random() < MISSING_RATE}
    mark_rows = [{"school_urn": urn, "pupil_id": pupil, "date": MONDAY, "session": "AM",
                  "code": code, "recorded_at": dt.datetime.fromisoformat(
                      recorded[(urn, pupil)]["recorded_at"]),
                  "event_id": recorded[(urn, pupil)]["event_id"]}
                 for (urn, pupil), code in codes.items() if (urn, pupil) not in missing]
    counters, persistent = _counters(authority, rng, now)
    actions, sent, replied, answers = [], [], [], []
    for number, ((urn, phone), pupil_ids) in enumerate(
            sorted(sibling_groups(expected_first_day_sms(authority)).items())):
        request_id = f"first_day_contact:{urn}:{MONDAY}:{number}"
        texted = REGISTERS_FROM.astimezone(dt.UTC) + dt.timedelta(minutes=55 + rng.random() * 5)
        for pupil_id in sorted(pupil_ids):
            actions.append({
                "dedup_key": first_day_contact.dedup_key(urn, pupil_id, MONDAY),
                "rule": first_day_contact.ID, "school_urn": urn, "pupil_id": pupil_id,
                "date": MONDAY, "due_at": texted, "status": "requested", "reason": "N mark",
                "created_at": texted, "updated_at": texted, "episode_start": MONDAY,
                "request_id": request_id})
        status = rng.choices(["delivered", "sent", "failed"], weights=[0.9, 0.07, 0.03])[0]
        sent.append({
            "id": f"n{number:07d}", "request_id": request_id, "rule": first_day_contact.ID,
            "school_urn": urn, "pupil_ids": sorted(pupil_ids), "recipient_role": "parent",
            "recipient_ref": f"contact:{number}:1", "channel": "sms", "to": phone,
            "body": "Bench School: your child is not in school today. Please reply.",
            "status": status, "provider_id": f"SM{number:032d}", "attempts": 1,
            "due_at": texted, "sent_at": texted, "created_at": texted, "updated_at": texted,
            "kind": "family", "family_index": 0})
        if status != "failed" and rng.random() < REPLY_RATE:
            at = texted + dt.timedelta(minutes=rng.randint(2, 60))
            ref = f"contact:{number}:1"
            replied.append({
                "id": f"reply{number:07d}:{urn}", "message_sid": f"SM{number:032d}r",
                "school_urn": urn, "from_phone": phone, "body": "Sorry, poorly today",
                "kind": "reply", "matched": True, "contact_ref": ref,
                "pupil_ids": sorted(pupil_ids),
                "episodes": [{"pupil_id": p, "episode_start": MONDAY.isoformat()}
                             for p in sorted(pupil_ids)], "received_at": at})
            answers += [{"reply_id": f"reply{number:07d}", "pupil_id": p, "school_urn": urn,
                         "contact_ref": ref, "received_at": at} for p in sorted(pupil_ids)]
    big = authority.schools[0]["urn"]
    return Morning(
        triage={marks: mark_rows, attendance_counters: counters, scheduled_actions: actions,
                parent_replies: answers},
        notifier={notifications: sent, notifier_replies: replied},
        to_follow_up=sum(1 for key, code in codes.items()
                         if key[0] == big and (code == "N" or key in missing)),
        persistent=persistent)


def _counters(authority: Authority, rng: random.Random, now: dt.datetime
              ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """This school year's sessions per pupil: most absent a little, ~12% 10% or more."""
    rows, persistent = [], {}
    for school in authority.schools:
        persistent[school["urn"]] = 0
        for pupil in school["pupils"]:
            if rng.random() < PERSISTENT_RATE:
                persistent[school["urn"]] += 1
                rate = rng.uniform(0.5, 0.9) if rng.random() < SEVERE_SHARE else (
                    rng.uniform(0.11, 0.45))
            else:
                rate = rng.uniform(0.0, 0.09)
            absent = round(POSSIBLE * rate)
            unauthorised = round(absent * rng.uniform(0.0, 0.6))
            rows.append({"school_urn": school["urn"], "pupil_id": pupil["id"],
                         "year_start": school_year_start(MONDAY), "possible": POSSIBLE,
                         "authorised": absent - unauthorised, "unauthorised": unauthorised,
                         "updated_at": now})
    return rows, persistent


async def _insert(engine: AsyncEngine, tables: dict[Table, list[dict[str, Any]]]) -> None:
    async with engine.begin() as conn:
        for table, rows in tables.items():
            if rows:
                await conn.execute(insert(table), rows)


@dataclass
class Pages:
    """A signed-in browser for each person, and direct clients of the two services."""

    officer: httpx.AsyncClient
    la_officer: httpx.AsyncClient
    triage: httpx.AsyncClient
    notifier: httpx.AsyncClient


@contextlib.asynccontextmanager
async def staff_stack(urls: dict[str, str], authority: Authority, rows: Morning,
                      workdir: Path) -> AsyncIterator[Pages]:
    """Triage, the notifier and the staff app, each on its own database from `urls`."""
    clock = FrozenClock(NOW)
    await rosters.load(urls["triage"], authority, NOW)
    triage = TriageService(TriageSettings(database_url=urls["triage"]), clock,
                           run_scheduler=False)
    notifier = NotifierService(NotifierSettings(database_url=urls["notifier"],
                                                outbox_dir=workdir / "outbox"), clock,
                               run_dispatcher=False)
    await upgrade_triage(triage.engine)
    await upgrade_notifier(notifier.engine)
    await _insert(triage.engine, rows.triage)
    await _insert(notifier.engine, rows.notifier)
    urns = [school["urn"] for school in authority.schools]
    _, triage_key = await triage.keys.create("staff app", TRIAGE_SCOPES, urns, clock.now())
    _, notifier_key = await notifier.keys.create("staff app", NOTIFIER_SCOPES, urns,
                                                 clock.now())
    transports: dict[str, httpx.AsyncBaseTransport] = {
        "triage": httpx.ASGITransport(app=triage_app(triage)),
        "notifier": httpx.ASGITransport(app=notifier_app(notifier))}
    staff = build(StaffSettings(database_url=urls["staff"],
                                triage_key=SecretStr(triage_key),
                                notifier_key=SecretStr(notifier_key)),
                  clock=clock, transports=transports)
    await migrate(staff.engine)
    for email, role, schools in (("officer@bench.example", Role.ATTENDANCE_OFFICER, urns[:1]),
                                 ("la@bench.example", Role.LA_OFFICER, urns)):
        await staff.accounts.create(email=email, name="Bench Person", role=role,
                                    password=PASSWORD, schools=schools, now=clock.now())
    staff_transport = httpx.ASGITransport(app=create_app(staff))
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(
            transport=staff_transport, base_url="http://staff.bench")) for _ in range(2)]
        for client, email in zip(clients, ("officer@bench.example", "la@bench.example"),
                                 strict=True):
            signed = await client.post("/login", data={"email": email, "password": PASSWORD})
            if signed.status_code != 303:
                raise RuntimeError(f"bench: sign-in answered {signed.status_code}")
        triage_client = await stack.enter_async_context(httpx.AsyncClient(
            transport=transports["triage"], base_url="http://triage.bench/api/v1",
            headers={"Authorization": f"Bearer {triage_key}"}))
        notifier_client = await stack.enter_async_context(httpx.AsyncClient(
            transport=transports["notifier"], base_url="http://notifier.bench/api/v1",
            headers={"Authorization": f"Bearer {notifier_key}"}))
        try:
            yield Pages(clients[0], clients[1], triage_client, notifier_client)
        finally:
            await staff.backend.close()
            for engine in (staff.engine, triage.engine, notifier.engine):
                await engine.dispose()


async def timed(requests: int, *calls: Callable[[], Awaitable[Any]]) -> list[Timing]:
    """Each call `requests` times, taking turns, so a page and its baseline share whatever
    else the machine is doing at the time."""
    for call in calls:
        for _ in range(WARM_UP):
            await call()
    seconds: list[list[float]] = [[] for _ in calls]
    for _ in range(requests):
        for call, taken in zip(calls, seconds, strict=True):
            started = time.perf_counter()
            await call()
            taken.append(time.perf_counter() - started)
    return [Timing(taken) for taken in seconds]


async def _ok(response: Awaitable[httpx.Response]) -> httpx.Response:
    answered = await response
    if answered.status_code != 200:
        raise RuntimeError(f"bench: {answered.request.url.path} answered "
                           f"{answered.status_code}")
    return answered


def _persistent_page(client: httpx.AsyncClient) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: _ok(client.get("/lists", params={"list": "persistent"}))


async def measure(report: Report, label: str, pages: Pages, authority: Authority,
                  rows: Morning, requests: int) -> None:
    """Every figure for one database: each page beside the service calls it makes."""
    urn = authority.schools[0]["urn"]
    urns = [school["urn"] for school in authority.schools]
    since = dt.datetime.combine(MONDAY, dt.time(0), LONDON).astimezone(dt.UTC).isoformat()

    async def today_raw() -> None:
        await _ok(pages.triage.get(f"/schools/{urn}/absences"))
        await _ok(pages.notifier.get("/notifications", params={"school_urn": urn,
                                                                "since": since}))
        await _ok(pages.notifier.get("/replies", params={"school_urn": urn, "since": since}))

    def list_raw(schools: list[str]) -> Callable[[], Awaitable[httpx.Response]]:
        params = [("list", "persistent"), *(("school_urn", s) for s in schools)]
        return lambda: _ok(pages.triage.get("/attendance", params=params))

    healthz, = await timed(requests, lambda: _ok(pages.officer.get("/healthz")))
    report.figure(f"staff app GET /healthz, {label}", healthz.ms(),
                  note=f"p50 / p95 of {requests} requests: the floor of a request through "
                       "the app (no session, no service call)")
    today_page = f"/schools/{urn}/today"
    page, raw = await timed(requests, lambda: _ok(pages.officer.get(today_page)), today_raw)
    shown = (await _ok(pages.officer.get(today_page))).text
    report.figure(f"Today page, {SCHOOL_PUPILS:,}-pupil school, {label}", page.ms(),
                  f"x{page.p50 / raw.p50:.2f}",
                  f"p50 / p95 of {requests} requests; its 3 API calls made directly: "
                  f"{raw.ms()}; {rows.to_follow_up} pupils to follow up")
    report.check(f"Today ({label}) lists the {rows.to_follow_up} N or missing marks",
                 f"{rows.to_follow_up} to follow up" in shown)
    for who, client, schools in (("the school's officer", pages.officer, urns[:1]),
                                 (f"LA officer, {len(urns)} schools", pages.la_officer, urns)):
        page, raw = await timed(requests, _persistent_page(client), list_raw(schools))
        answer = (await list_raw(schools)()).json()
        listed = (await _persistent_page(client)()).text
        expected = sum(rows.persistent[s] for s in schools)
        pupils = sum(len(s["pupils"]) for s in authority.schools if s["urn"] in schools)
        report.figure(f"persistent-absence list, {who}, {label}", page.ms(),
                      f"x{page.p50 / raw.p50:.2f}",
                      f"p50 / p95 of {requests} requests; GET /attendance made directly: "
                      f"{raw.ms()}; {len(answer['rows']):,} of {pupils:,} pupils listed"
                      + (" (truncated at the API's limit)" if answer["truncated"] else ""))
        report.check(f"persistent list ({who}, {label}): the {expected:,} pupils with 10% or "
                     "more absence, and the page shows what the API answered",
                     len(answer["rows"]) == min(expected, 5000)
                     # The page shows the first hundred and counts them all.
                     and f"of {expected} pupils, lowest attendance first" in listed)


async def run(report: Report, databases: dict[str, Callable[[str], Awaitable[str]]],
              schools: int, pupils_per_school: int, requests: int, seed: int,
              workdir: Path) -> None:
    """`databases`: per label ("SQLite", "PostgreSQL"), a function making a fresh database
    URL for a service by name."""
    started = time.perf_counter()
    town = authority(schools, pupils_per_school, seed)
    rows = morning(town, seed)
    report.notes.append(
        f"Staff pages: {len(town.schools)} schools, {town.pupil_count:,} pupils (the first "
        f"{SCHOOL_PUPILS:,}, the others {pupils_per_school:,}); "
        f"{len(rows.triage[marks]):,} AM marks ({sum(m['code'] == 'N' for m in rows.triage[marks]):,} N), "
        f"{town.pupil_count - len(rows.triage[marks]):,} missing; "
        f"{len(rows.notifier[notifications]):,} first-day SMS, "
        f"{len(rows.notifier[notifier_replies]):,} replies; "
        f"{sum(rows.persistent.values()):,} persistently absent (seed {seed}). Morning "
        "bulk-inserted into the services' tables (page time is measured, not ingest); "
        "services called in-process with scoped keys; p50 / p95 after "
        f"{WARM_UP} warm-up requests, each page taking turns with its baseline.")
    for label, fresh in databases.items():
        urls = {name: await fresh(name) for name in ("triage", "notifier", "staff")}
        async with staff_stack(urls, town, rows, workdir / label) as pages:
            await measure(report, label, pages, town, rows, requests)
    report.notes.append(f"Staff pages wall time: {time.perf_counter() - started:.0f} s.")
