"""Builders for school documents and events, with the contract's field names."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
URN = "123456"
MONDAY = dt.date(2026, 11, 23)
# The longest names a message must carry in one SMS segment (issue 16): a 30-character school
# name and a 20-character first name.
LONGEST_SCHOOL_NAME = "Ysgol Gynradd Gymraeg Bro Tawe"
LONGEST_GIVEN_NAME = "Maximilian-Alexander"


def contact(priority: int = 1, *, phone: str | None = "+447700900001",
            email: str | None = "parent1@example.com", name: str = "Jane Smith",
            language: str = "en", no_contact: bool = False) -> dict[str, Any]:
    return {"name": name, "relationship": "mother", "priority": priority, "phone": phone,
            "email": email, "language": language, "no_contact": no_contact,
            "attendance_updates": False}


def pupil(pupil_id: str, given_name: str = "Sally", family_name: str = "Smith",
          contacts: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": pupil_id, "given_name": given_name, "family_name": family_name,
            "year_group": 3, "looked_after": False, "ehcp": False,
            "contacts": contacts if contacts is not None else [contact()], **extra}


def school(pupils: list[dict[str, Any]], *, urn: str = URN, policy: dict[str, Any] | None = None,
           closures: list[str] | None = None) -> dict[str, Any]:
    return {
        "urn": urn,
        "name": "Millbrook Primary School",
        "timezone": "Europe/London",
        "phone": "+441235764822",
        "calendar": {"terms": [{"start": "2026-09-03", "end": "2026-12-18"}],
                     "closures": closures if closures is not None else ["2026-11-20"]},
        "staff": [
            {"role": "attendance_officer", "name": "R Baish",
             "email": "attendance@millbrook.example", "phone": "+447700900100"},
            {"role": "dsl", "name": "Safeguarding Lead", "email": "dsl@millbrook.example"},
        ],
        "local_authority": {"name": "Oxfordshire", "attendance_team_email": "attendance@la.example"},
        "policy": policy or {},
        "pupils": pupils,
    }


def mark(pupil_id: str, code: str = "N", *, day: dt.date = MONDAY, session: str = "AM",
         recorded: dt.datetime | None = None, urn: str = URN, event_id: str | None = None,
         comment: str | None = None) -> dict[str, Any]:
    recorded = recorded or dt.datetime.combine(day, dt.time(8, 52), tzinfo=LONDON)
    return {"schema": "register.mark/v1", "event_id": event_id or str(uuid.uuid4()),
            "school_urn": urn, "pupil_id": pupil_id, "date": day.isoformat(),
            "session": session, "code": code, "recorded_at": recorded.isoformat(),
            "minutes_late": None, "comment": comment}


def removal(pupil_id: str, *, day: dt.date = MONDAY, urn: str = URN) -> dict[str, Any]:
    return {"schema": "pupil.removed/v1", "event_id": str(uuid.uuid4()), "school_urn": urn,
            "pupil_id": pupil_id, "date": day.isoformat(), "ground": "moved away"}
