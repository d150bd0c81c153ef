"""One pass over every school in WONDE_SCHOOLS: its roster to triage, then its new register
marks to the broker.

The roster goes first so the marks that follow find their pupils (a mark for a pupil triage
does not know yet is parked, not lost, either way). Each cursor moves only after what it
covers was accepted: marks confirmed by the broker, a roster answered 200 by triage. A pass
that fails half-way is repeated from the old cursor; the marks' event ids are derived from
their content, so what was already handed over comes back as duplicates that change nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from servicekit.clock import LONDON, Clock
from sqlalchemy.ext.asyncio import AsyncEngine

from mis_sync import mapping, store
from mis_sync.settings import SchoolLink
from mis_sync.wonde import Record, SchoolRefused, WondeClient, WondeError, WondeUnavailable

log = logging.getLogger(__name__)

Publish = Callable[[Record], Awaitable[None]]

# Records are asked for from a little before the cursor: a record saved in the same second as
# the newest one seen, or committed late by the MIS, is not missed. What comes back twice is a
# duplicate (same event id) or an unchanged roster (same digest).
OVERLAP = dt.timedelta(minutes=10)
STUDENTS = "students"
ROSTER_INCLUDE = "contacts,contacts.contact_details"


class SchoolFileError(Exception):
    """`{urn}.json` in MIS_SYNC_SCHOOLS_DIR is not a JSON object: that school waits, the
    others go on."""


@dataclasses.dataclass
class SchoolOutcome:
    """What one pass did for one school (for the log, the command's output and tests)."""

    urn: str
    state: str = "synced"  # synced, revoked, skipped_revoked, failed
    roster: str = "unchanged"  # uploaded, unchanged, no_config, refused, failed
    marks_published: int = 0
    marks_skipped: int = 0


def wonde_cursor(when: dt.datetime) -> str:
    """`updated_after` as Wonde's timestamps read: school-local wall-clock time."""
    return (when - OVERLAP).astimezone(LONDON).strftime("%Y-%m-%d %H:%M:%S")


def school_year_start(now: dt.datetime) -> dt.datetime:
    """1 August of the current school year, school-local: how far back a first sync reads."""
    today = now.astimezone(LONDON).date()
    year = today.year if today.month >= 8 else today.year - 1
    return dt.datetime(year, 8, 1, tzinfo=LONDON).astimezone(dt.UTC) + OVERLAP


class Syncer:
    def __init__(self, *, engine: AsyncEngine, wonde: WondeClient, triage: httpx.AsyncClient,
                 publish: Publish, clock: Clock, schools_dir: Path) -> None:
        self._engine = engine
        self._wonde = wonde
        self._triage = triage
        self._publish = publish
        self._clock = clock
        self._schools_dir = schools_dir

    async def sync_all(self, links: tuple[SchoolLink, ...]) -> list[SchoolOutcome]:
        """Every school in turn; one school's failure or refusal does not stop the others."""
        return [await self.sync_school(link) for link in links]

    async def sync_school(self, link: SchoolLink) -> SchoolOutcome:
        status = await store.status(self._engine, link)
        outcome = SchoolOutcome(urn=link.urn)
        if status.state is store.SchoolState.REVOKED:
            log.info("mis_sync.school.skipped urn=%s state=revoked", link.urn)
            outcome.state = "skipped_revoked"
            return outcome
        try:
            outcome.roster = await self._sync_roster(link, status)
            outcome.marks_published, outcome.marks_skipped = await self._sync_marks(link, status)
        except SchoolRefused as refused:
            await store.revoke(self._engine, link.wonde_id, refused.status, self._clock.now())
            log.warning("mis_sync.school.revoked urn=%s wonde_school_id=%s status=%s: the "
                        "school no longer lets the app read its data; not synced until "
                        "`python -m mis_sync resume %s`", link.urn, link.wonde_id,
                        refused.status, link.urn)
            outcome.state = "revoked"
        except (WondeUnavailable, WondeError, SchoolFileError, httpx.HTTPError) as error:
            log.warning("mis_sync.school.failed urn=%s error=%s: tried again next pass",
                        link.urn, type(error).__name__ + ": " + str(error)[:200])
            outcome.state = "failed"
        else:
            log.info("mis_sync.school.synced urn=%s roster=%s marks=%d skipped=%d", link.urn,
                     outcome.roster, outcome.marks_published, outcome.marks_skipped)
        return outcome

    # --- roster --------------------------------------------------------------------------

    async def _roster_changed(self, link: SchoolLink, status: store.SchoolStatus) -> bool:
        """Anything new in Wonde since the last upload, or a new school-local day: leavers
        drop out of Wonde's list without a change to find, so the roster is read whole at
        least once a day."""
        cursor = status.roster_cursor
        if cursor is None or status.roster_digest is None or status.last_synced_at is None:
            return True
        if status.last_synced_at.astimezone(LONDON).date() != \
                self._clock.now().astimezone(LONDON).date():
            return True
        since = {"updated_after": wonde_cursor(cursor)}
        for resource in (STUDENTS, "contacts"):
            if await self._wonde.first(link.wonde_id, resource, since):
                return True
        return False

    async def _sync_roster(self, link: SchoolLink, status: store.SchoolStatus) -> str:
        if not await self._roster_changed(link, status):
            return "unchanged"
        students: list[Record] = []
        async for page in self._wonde.pages(link.wonde_id, STUDENTS,
                                            {"include": ROSTER_INCLUDE}):
            students.extend(page)
        document = self._document(link.urn)
        if document is None:
            log.warning("mis_sync.roster.no_config urn=%s: no %s.json in MIS_SYNC_SCHOOLS_DIR; "
                        "marks are still sent", link.urn, link.urn)
            return "no_config"
        pupils = [p for p in map(mapping.pupil, students) if p is not None]
        if len(pupils) < len(students):
            log.warning("mis_sync.roster.students_left_out urn=%s count=%d (no usable id or "
                        "name)", link.urn, len(students) - len(pupils))
        document = {**document, "urn": link.urn, "pupils": pupils}
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        times = [t for s in students for t in mapping.updated_times(s)]
        cursor = max(times, default=status.roster_cursor)
        if digest == status.roster_digest:
            await store.roster_synced(self._engine, link.wonde_id, cursor, digest)
            return "unchanged"
        response = await self._triage.put(f"/api/v1/schools/{link.urn}", json=document)
        if response.status_code != 200:
            log.warning("mis_sync.roster.refused urn=%s status=%d problems=%s", link.urn,
                        response.status_code, _problems(response))
            return "refused"
        await store.roster_synced(self._engine, link.wonde_id, cursor, digest)
        answer = response.json()
        log.info("mis_sync.roster.uploaded urn=%s pupils=%s added=%s left=%s", link.urn,
                 answer.get("pupils"), answer.get("added"), answer.get("left"))
        return "uploaded"

    def _document(self, urn: str) -> dict[str, Any] | None:
        """The school's own part of its document (name, calendar, staff, local authority,
        policy) from `{MIS_SYNC_SCHOOLS_DIR}/{urn}.json`."""
        path = self._schools_dir / f"{urn}.json"
        if not path.is_file():
            return None
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise SchoolFileError(f"{path.name} is not JSON") from None
        if not isinstance(document, dict):
            raise SchoolFileError(f"{path.name} is not a JSON object")
        return document

    # --- register marks ------------------------------------------------------------------

    async def _sync_marks(self, link: SchoolLink, status: store.SchoolStatus) -> tuple[int, int]:
        codes: dict[str, Record] = {}
        async for page in self._wonde.pages(link.wonde_id, "attendance-codes"):
            codes.update({str(code["id"]): code for code in page if "id" in code})
        since = status.attendance_cursor or school_year_start(self._clock.now())
        newest = status.attendance_cursor
        published = skipped = 0
        async for page in self._wonde.pages(link.wonde_id, "attendance/session",
                                            {"updated_after": wonde_cursor(since)}):
            events = []
            for record in page:
                event = mapping.mark_event(link.urn, record, codes)
                if event is None:
                    skipped += 1
                    log.warning("mis_sync.mark.skipped urn=%s record=%s: %s", link.urn,
                                str(record.get("id"))[:64], mapping.skip_reason(record, codes))
                    continue
                events.append(event)
            # A page's events published together, each still confirmed before the cursor can
            # move: one broker round trip per page, not one per mark (bench/results.md,
            # "Wonde sync"). Their order does not matter: the later `recorded_at` wins.
            await asyncio.gather(*(self._publish(event) for event in events))
            published += len(events)
            for event in events:
                recorded = dt.datetime.fromisoformat(event["recorded_at"])
                newest = recorded if newest is None else max(newest, recorded)
        await store.attendance_synced(self._engine, link.wonde_id, newest, self._clock.now())
        return published, skipped


def _problems(response: httpx.Response) -> str:
    """Where and what kind, never the values (they may be names, numbers or addresses)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return "unreadable"
    if not isinstance(detail, list):
        return "unreadable"
    return "; ".join(f"{'.'.join(str(p) for p in item.get('loc', []))}:{item.get('type')}"
                     for item in detail[:20] if isinstance(item, dict))
