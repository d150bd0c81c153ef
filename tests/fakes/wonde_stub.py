"""Loopback Wonde API (v1.0) for the MIS sync's tests: one school's students with their
contacts, its attendance codes and its session attendance, in the shapes Wonde documents.

- Every list is paged: `data` plus `meta.pagination` (`next` is the absolute URL of the next
  page, null on the last; `more`, `per_page`, `current_page`). The stub's page size is its
  own (`page_size`), whatever `per_page` asks, so a handful of records spans several pages.
- `updated_after` (`YYYY-MM-DD HH:MM:SS`, school-local) keeps records whose `updated_at` is
  later. Times are Wonde's date objects: `{"date": "2026-11-23 08:52:10.000000",
  "timezone_type": 3, "timezone": "Europe/London"}`.
- `students?include=contacts,contacts.contact_details` embeds each student's contacts
  (`{"data": [...]}`), each with `relationship` (`relationship`, `priority`,
  `parental_responsibility`, `court_order`) and `contact_details.data` (`emails`,
  `telephones`).
- `/attendance-codes`: `id`, `code`, `description`, `type` (the statistical meaning);
  `/attendance/session`: `id`, `student`, `attendance_code` (ids), `session`, `date`,
  `minutes_late`, `comment`, `created_at`, `updated_at`.
- A school that revoked access answers 401 (or 403); `fail_next` scripts 429s (with
  `Retry-After`) or 5xx before any other check.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

LONDON = ZoneInfo("Europe/London")
TOKEN = "wonde-test-token-0123456789abcdef"

# (code, statistical meaning) as a school's MIS lists them: national codes, one of the
# school's own (`EX`, counted as authorised) and the "no mark yet" placeholder.
DEFAULT_CODES = [("/", "PRESENT"), ("\\", "PRESENT"), ("L", "LATE"), ("N", "UNAUTHORISED_ABSENCE"),
                 ("O", "UNAUTHORISED_ABSENCE"), ("U", "UNAUTHORISED_ABSENCE"),
                 ("I", "AUTHORISED_ABSENCE"), ("C1", "AUTHORISED_ABSENCE"),
                 ("EX", "AUTHORISED_ABSENCE"), ("X", "ATTENDANCE_NOT_REQUIRED"),
                 ("-", "NO_MARK")]


def wonde_time(when: dt.datetime) -> dict[str, Any]:
    local = when.astimezone(LONDON)
    return {"date": local.strftime("%Y-%m-%d %H:%M:%S.%f"), "timezone_type": 3,
            "timezone": "Europe/London"}


def contact(contact_id: str, forename: str, surname: str, *, priority: int = 1,
            relationship: str = "Mother", parental_responsibility: bool = True,
            court_order: bool = False, mobile: str | None = "07700 900001",
            email: str | None = "parent@example.com", language: str | None = None,
            updated_at: dt.datetime | None = None) -> dict[str, Any]:
    """A contact as `include=contacts,contacts.contact_details` embeds it."""
    record: dict[str, Any] = {
        "id": contact_id, "forename": forename, "surname": surname, "title": None,
        "relationship": {"relationship": relationship, "priority": str(priority),
                         "parental_responsibility": parental_responsibility,
                         "court_order": court_order, "lives_with_pupil": True},
        "contact_details": {"data": {"emails": {"email": email, "primary": email},
                                     "telephones": {"mobile": mobile, "phone": None}}},
        "updated_at": wonde_time(updated_at or dt.datetime(2026, 9, 1, tzinfo=dt.UTC)),
    }
    if language is not None:
        record["language"] = language
    return record


@dataclass
class School:
    students: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusal: int | None = None


class WondeStub:
    def __init__(self, token: str = TOKEN, page_size: int = 2) -> None:
        self.token = token
        self.page_size = page_size
        self.base_url = ""
        self.schools: dict[str, School] = {}
        # Every request: (school id, resource, query) for assertions on paging and cursors.
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._faults: deque[tuple[int, str | None]] = deque()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    async def start(self) -> WondeStub:
        app = web.Application()
        app.router.add_get("/v1.0/schools/{school}/{resource:.+}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1.0"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- scripting -------------------------------------------------------------------

    def school(self, school_id: str) -> School:
        """The school, made with the default attendance codes on first use."""
        if school_id not in self.schools:
            codes = {f"AC{n}": {"id": f"AC{n}", "code": code, "description": code,
                                "type": meaning}
                     for n, (code, meaning) in enumerate(DEFAULT_CODES, start=1)}
            self.schools[school_id] = School(codes=codes)
        return self.schools[school_id]

    def add_student(self, school_id: str, student_id: str, forename: str, surname: str,
                    contacts: list[dict[str, Any]], *,
                    updated_at: dt.datetime | None = None) -> None:
        self.school(school_id).students[student_id] = {
            "id": student_id, "upi": None, "mis_id": student_id[-4:], "forename": forename,
            "surname": surname, "legal_forename": forename, "legal_surname": surname,
            "contacts": contacts,
            "updated_at": wonde_time(updated_at or dt.datetime(2026, 9, 1, tzinfo=dt.UTC)),
        }

    def mark(self, school_id: str, record_id: str, student_id: str, code: str, *,
             day: dt.date, session: str, updated_at: dt.datetime,
             minutes_late: int | None = None, comment: str | None = None) -> None:
        """Record (or re-code) a session mark; a re-code keeps the record's id and moves
        its `updated_at`, as the MIS does."""
        school = self.school(school_id)
        code_id = next(c["id"] for c in school.codes.values() if c["code"] == code)
        created = school.sessions.get(record_id, {}).get("created_at", wonde_time(updated_at))
        school.sessions[record_id] = {
            "id": record_id, "mis_id": record_id, "student": student_id,
            "attendance_code": code_id, "session": session,
            "date": {"date": f"{day.isoformat()} 00:00:00.000000", "timezone_type": 3,
                     "timezone": "Europe/London"},
            "minutes_late": minutes_late, "comment": comment, "employee": None,
            "created_at": created, "updated_at": wonde_time(updated_at),
        }

    def revoke(self, school_id: str, status: int = 401) -> None:
        self.school(school_id).refusal = status

    def fail_next(self, count: int, status: int = 429, retry_after: str | None = None) -> None:
        self._faults.extend([(status, retry_after)] * count)

    # ---- HTTP ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        school_id, resource = request.match_info["school"], request.match_info["resource"]
        query = dict(request.query)
        self.requests.append((school_id, resource, query))
        if self._faults:
            status, retry_after = self._faults.popleft()
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response({"error": "rate_limited" if status == 429 else "error"},
                                     status=status, headers=headers)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "invalid_token"}, status=401)
        school = self.schools.get(school_id)
        if school is None:
            return web.json_response({"error": "not_found"}, status=404)
        if school.refusal is not None:
            return web.json_response({"error": "access_denied"}, status=school.refusal)
        records = self._records(school, resource, query.get("include", ""))
        if records is None:
            return web.json_response({"error": "not_found"}, status=404)
        if "updated_after" in query:
            after = dt.datetime.strptime(query["updated_after"], "%Y-%m-%d %H:%M:%S")
            records = [r for r in records if _local(r["updated_at"]) > after]
        page = int(query.get("page", "1"))
        size = 1 if query.get("per_page") == "1" else self.page_size
        chunk = records[(page - 1) * size: page * size]
        more = page * size < len(records)
        following = None
        if more:
            following = (f"{self.base_url}/schools/{school_id}/{resource}?"
                         + urlencode({**query, "page": str(page + 1)}))
        return web.json_response({"data": chunk, "meta": {"pagination": {
            "next": following, "previous": None, "more": more, "per_page": size,
            "current_page": page}}})

    @staticmethod
    def _records(school: School, resource: str, include: str) -> list[dict[str, Any]] | None:
        if resource == "students":
            embed = "contacts" in include.split(",")
            return [{**s, "contacts": {"data": s["contacts"]}} if embed
                    else {k: v for k, v in s.items() if k != "contacts"}
                    for s in school.students.values()]
        if resource == "contacts":
            return [c for s in school.students.values() for c in s["contacts"]]
        if resource == "attendance-codes":
            return list(school.codes.values())
        if resource == "attendance/session":
            return list(school.sessions.values())
        return None


def _local(value: dict[str, Any]) -> dt.datetime:
    return dt.datetime.strptime(value["date"], "%Y-%m-%d %H:%M:%S.%f")
