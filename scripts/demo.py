"""`make demo`: load a sample school into a running system and publish a morning's marks.

Run `make run` first (in another terminal). The sample school's first-day contact time is
set to 00:00 so the contacts go out at once instead of at 09:30; with no Twilio or SMTP
configured they land in the local outbox (var/outbox/).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

LONDON = ZoneInfo("Europe/London")
ROOT = Path(__file__).resolve().parents[1]
URN = "100001"


def _token() -> str:
    token = os.environ.get("API_TOKEN")
    if not token:
        path = ROOT / "var" / "api-token"
        token = path.read_text().strip() if path.exists() else ""
    if not token:
        sys.exit("No API token: start the system with 'make run' first (it writes var/api-token).")
    return token


def _now() -> dt.datetime:
    """The services' clock: real time, or the rehearsal clock they were started on."""
    offset = float(os.environ.get("CLOCK_OFFSET_SECONDS") or 0)
    return dt.datetime.now(LONDON) + dt.timedelta(seconds=offset)


def _school_day(today: dt.date) -> dt.date:
    day = today
    while day.weekday() >= 5:  # the demo's register is for the most recent weekday
        day -= dt.timedelta(days=1)
    return day


def sample_school(day: dt.date) -> dict[str, object]:
    year_start = dt.date(day.year if day.month >= 9 else day.year - 1, 9, 1)

    def parent(n: int, name: str, language: str = "en") -> dict[str, object]:
        return {"name": name, "relationship": "parent", "priority": 1,
                "phone": f"+4477009{n:05d}", "email": f"parent{n}@example.com",
                "language": language, "no_contact": False, "attendance_updates": True}

    pupils = [
        {"id": "D001", "given_name": "Sally", "family_name": "Smith", "year_group": 3,
         "contacts": [parent(1, "Jane Smith")]},
        {"id": "D002", "given_name": "Tom", "family_name": "Jones", "year_group": 5,
         "contacts": [parent(2, "Rhian Jones", "cy")]},
        {"id": "D003", "given_name": "Ada", "family_name": "Brown", "year_group": 1,
         "contacts": [parent(3, "Sam Brown")]},
        {"id": "D004", "given_name": "Noor", "family_name": "Khan", "year_group": 4,
         "contacts": [{**parent(4, "A Khan"), "no_contact": True}, {**parent(5, "B Khan"),
                                                                     "priority": 2}]},
        {"id": "D005", "given_name": "Leo", "family_name": "Green", "year_group": 6,
         "contacts": [parent(6, "Kim Green")]},
    ]
    return {
        "urn": URN, "name": "Demo Primary School", "timezone": "Europe/London",
        "phone": "+441632960000",
        # One term over the whole year: the demo runs in the holidays too (marks on a day
        # that is not a school day are refused).
        "calendar": {"terms": [{"start": year_start.isoformat(),
                                "end": (year_start + dt.timedelta(days=364)).isoformat()}],
                     "closures": []},
        "staff": [{"role": "attendance_officer", "name": "Attendance Officer",
                   "email": "attendance@demo.example"}],
        "policy": {"first_day_contact": {"not_before": "00:00"}},
        "pupils": pupils,
    }


def morning_marks(day: dt.date) -> list[dict[str, object]]:
    # Registers are taken around 08:50; before then (a demo run at night) use "just now".
    taken = min(dt.datetime.combine(day, dt.time(8, 50), tzinfo=LONDON),
                _now() - dt.timedelta(minutes=10))

    def mark(pupil_id: str, code: str, minute: int) -> dict[str, object]:
        recorded = taken + dt.timedelta(minutes=minute - 50)
        return {"schema": "register.mark/v1", "event_id": str(uuid.uuid4()), "school_urn": URN,
                "pupil_id": pupil_id, "date": day.isoformat(), "session": "AM", "code": code,
                "recorded_at": recorded.isoformat(), "minutes_late": None, "comment": None}

    return [
        mark("D001", "N", 50),  # no reason given: Sally's parent is contacted
        mark("D002", "N", 50),  # Tom's parent prefers Welsh
        mark("D003", "N", 50),
        mark("D003", "I", 55),  # ...but Ada's parent rang in: amended to illness, no contact
        mark("D004", "N", 50),  # first contact has a court order: the second is used
        mark("D005", "/", 50),  # present
    ]


def main() -> None:
    triage = os.environ.get("TRIAGE_URL", f"http://127.0.0.1:{os.environ.get('TRIAGE_PORT', '8001')}")
    notifier = os.environ.get("NOTIFIER_URL",
                              f"http://127.0.0.1:{os.environ.get('NOTIFIER_PORT', '8002')}")
    headers = {"Authorization": f"Bearer {_token()}"}
    day = _school_day(_now().astimezone(LONDON).date())
    with httpx.Client(headers=headers, timeout=30) as client:
        response = client.put(f"{triage}/api/v1/schools/{URN}", json=sample_school(day))
        response.raise_for_status()
        print(f"Loaded {response.json()['pupils']} pupils of Demo Primary School (URN {URN}).")
        response = client.post(f"{triage}/api/v1/events", json=morning_marks(day))
        response.raise_for_status()
        print(f"Published {len(response.json()['accepted'])} register marks for {day}.")
        # Wait until every notification is settled, or nothing has changed for a few seconds
        # (texts held for quiet hours stay pending until the window opens).
        deadline = time.monotonic() + 30
        sent: list[dict[str, object]] = []
        unchanged = 0
        while time.monotonic() < deadline and unchanged < 6:
            latest = client.get(f"{notifier}/api/v1/notifications",
                                params={"school_urn": URN}).json()
            if len(latest) >= 6 and all(n["status"] != "pending" for n in latest):
                sent = latest
                break
            unchanged = unchanged + 1 if latest == sent and latest else 0
            sent = latest
            time.sleep(0.5)
    for notification in sent:
        print(f"  {notification['rule']}: {notification['channel']} to "
              f"{notification['recipient_role']} for {', '.join(notification['pupil_ids'])}"
              f" -> {notification['status']}")
    outbox = os.environ.get("OUTBOX_DIR", "var/outbox")
    print(f"\nMessages not sent for real are in {outbox}/ (one file each).")
    if any(n["status"] == "pending" for n in sent):
        print("Texts still pending are held for quiet hours or a non-school day; they go out "
              "when the school's contact window opens (08:00 on the next school day).")


if __name__ == "__main__":
    main()
