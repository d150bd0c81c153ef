"""`make demo`: load a sample school into a running system and give it a morning worth looking
at on the staff screens (http://127.0.0.1:8003 while `make run` is running).

Run `make run` first (in another terminal). The demo school (URN 100001) has 30 pupils. Eight
school weeks of earlier marks are published first, so the rates mean something: a few pupils
are persistently absent, one severely, one had a term-time holiday, and one has not been seen
for two days. Then this morning's register: several unexplained absences, one amended to
illness, one pupil with no mark yet. The school's first-day contact time is 00:00 so the
contacts go out at once instead of at 09:30; with no Twilio or SMTP configured they land in the
local outbox (var/outbox/). Last, a parent answers the text, signed the way Twilio signs it.

Running it again changes nothing that is already there: each mark's event id is derived from
its content, so a repeat is a duplicate triage ignores, and the reply's MessageSid is fixed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from twilio.request_validator import RequestValidator

LONDON = ZoneInfo("Europe/London")
ROOT = Path(__file__).resolve().parents[1]
URN = "100001"
# Event ids are uuid5 of the mark's content in this namespace: a rerun publishes duplicates.
EVENT_IDS = uuid.UUID("6f1c9a52-3d0e-4c36-9a3b-5d2f5d1e7a10")
# School days of earlier marks: past `min_possible_sessions` (20), so the rates are acted on.
HISTORY_DAYS = 40
BATCH = 1000  # POST /api/v1/events takes at most 1,000 events
# The pupil whose parent answers the first-day text.
REPLYING = "D001"
LOCAL_AUTHORITY = {
    "name": "Demo County Council",
    "attendance_team_email": "attendance.team@county.example",
    "send_team_email": "send.team@county.example",
    "virtual_school_email": "virtual.school@county.example",
}
SOCIAL_WORKER = {"name": "Demo Social Worker", "email": "social.worker@demo.example"}


def _token() -> str:
    token = os.environ.get("API_TOKEN")
    if not token:
        path = ROOT / "var" / "api-token"
        token = path.read_text().strip() if path.exists() else ""
    if not token:
        sys.exit("No API token: start the system with 'make run' first (it writes var/api-token).")
    return token


def _twilio_token() -> str | None:
    """The notifier's TWILIO_AUTH_TOKEN, to sign the parent's reply. `make run` makes a local
    one when no Twilio account is configured (var/twilio-auth-token); with a real account the
    demo's texts went nowhere a parent could answer, so no reply is made up."""
    if os.environ.get("TWILIO_ACCOUNT_SID"):
        return None
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if not token:
        path = ROOT / "var" / "twilio-auth-token"
        token = path.read_text().strip() if path.exists() else ""
    return token or None


def _now() -> dt.datetime:
    """The services' clock: real time, or the rehearsal clock they were started on."""
    offset = float(os.environ.get("CLOCK_OFFSET_SECONDS") or 0)
    return dt.datetime.now(LONDON) + dt.timedelta(seconds=offset)


def _school_day(today: dt.date) -> dt.date:
    day = today
    while day.weekday() >= 5:  # the demo's register is for the most recent weekday
        day -= dt.timedelta(days=1)
    return day


def _year_start(day: dt.date) -> dt.date:
    return dt.date(day.year if day.month >= 9 else day.year - 1, 9, 1)


def earlier_school_days(day: dt.date) -> list[dt.date]:
    """Up to HISTORY_DAYS weekdays before `day` in its school year, oldest first (the demo's
    one term has no holidays). Early in September there are fewer, and the rates stay quiet."""
    days: list[dt.date] = []
    candidate = day - dt.timedelta(days=1)
    while len(days) < HISTORY_DAYS and candidate >= _year_start(day):
        if candidate.weekday() < 5:
            days.append(candidate)
        candidate -= dt.timedelta(days=1)
    return days[::-1]


def _contact(n: int, name: str, relationship: str, priority: int = 1, *,
             language: str = "en", no_contact: bool = False) -> dict[str, object]:
    """Phone numbers from Ofcom's drama range (07700 900xxx): never anybody's."""
    email = re.sub(r"[^a-z]+", ".", name.lower()).strip(".") + "@example.com"
    return {"name": name, "relationship": relationship, "priority": priority,
            "phone": f"+4477009{n:05d}", "email": email, "language": language,
            "no_contact": no_contact, "attendance_updates": True}


def _pupil(pupil_id: str, given: str, family: str, year: int, *contacts: dict[str, object],
           **extra: object) -> dict[str, object]:
    return {"id": pupil_id, "given_name": given, "family_name": family, "year_group": year,
            "contacts": list(contacts), **extra}


def roster() -> list[dict[str, object]]:
    return [
        _pupil("D001", "Amelia", "Hughes", 3, _contact(1, "Megan Hughes", "mother"),
               _contact(11, "Gareth Hughes", "father", 2)),
        _pupil("D002", "Osian", "Pritchard", 5,
               _contact(2, "Carys Pritchard", "mother", language="cy")),
        _pupil("D003", "Ravi", "Patel", 1, _contact(3, "Priya Patel", "mother")),
        # A court order: the father may not be contacted; the mother is next in line.
        _pupil("D004", "Zara", "Ahmed", 4, _contact(4, "Imran Ahmed", "father", no_contact=True),
               _contact(5, "Sadia Ahmed", "mother", 2)),
        _pupil("D005", "Kayden", "Walsh", 6, _contact(6, "Helen Marsh", "foster carer"),
               looked_after=True, social_worker=SOCIAL_WORKER),
        _pupil("D006", "Mia", "Kowalski", 2, _contact(7, "Agnieszka Kowalska", "mother"),
               social_worker=SOCIAL_WORKER),
        _pupil("D007", "Finley", "Carter", 2, _contact(8, "Leanne Carter", "mother")),
        _pupil("D008", "Ellis", "Morgan", 1, _contact(9, "Bethan Morgan", "mother")),
        _pupil("D009", "Maya", "Robinson", 5, _contact(10, "Chloe Robinson", "mother")),
        _pupil("D010", "Harvey", "Wilson", 4, _contact(12, "Dean Wilson", "father")),
        _pupil("D011", "Lily-Mae", "Thompson", 6, _contact(13, "Kerry Thompson", "mother")),
        _pupil("D012", "Jayden", "Clarke", 3, _contact(14, "Shannon Clarke", "mother")),
        _pupil("D013", "Poppy", "Evans", 0, _contact(15, "Sian Evans", "mother")),
        _pupil("D014", "Oliver", "Bennett", 0, _contact(16, "Laura Bennett", "mother")),
        _pupil("D015", "Isla", "Fraser", 1, _contact(17, "Fiona Fraser", "mother")),
        _pupil("D016", "Muhammad", "Hussain", 2, _contact(18, "Tariq Hussain", "father")),
        _pupil("D017", "Freya", "Lewis", 3, _contact(19, "Emma Lewis", "mother")),
        _pupil("D018", "Theo", "Ward", 4, _contact(20, "Paul Ward", "father")),
        _pupil("D019", "Aisha", "Begum", 5, _contact(21, "Rukhsana Begum", "mother")),
        _pupil("D020", "Jack", "O'Connor", 6, _contact(22, "Siobhan O'Connor", "mother")),
        _pupil("D021", "Evie", "Price", 0, _contact(23, "Natalie Price", "mother")),
        _pupil("D022", "Kai", "Nguyen", 1, _contact(24, "Linh Nguyen", "mother")),
        _pupil("D023", "Grace", "Adeyemi", 2, _contact(25, "Funmi Adeyemi", "mother")),
        _pupil("D024", "Reuben", "Davies", 3, _contact(26, "Owain Davies", "father")),
        _pupil("D025", "Sofia", "Rossi", 4, _contact(27, "Giulia Rossi", "mother")),
        _pupil("D026", "Arlo", "Jenkins", 5, _contact(28, "Hannah Jenkins", "mother")),
        _pupil("D027", "Hana", "Yilmaz", 6, _contact(29, "Elif Yilmaz", "mother")),
        _pupil("D028", "Ethan", "Walker", 1, _contact(30, "Craig Walker", "father")),
        _pupil("D029", "Ruby", "Shaw", 2, _contact(31, "Gemma Shaw", "mother")),
        _pupil("D030", "Daniel", "Okafor", 4, _contact(32, "Ngozi Okafor", "mother")),
    ]


def sample_school(day: dt.date) -> dict[str, object]:
    year_start = _year_start(day)
    return {
        "urn": URN, "name": "Demo Primary School", "timezone": "Europe/London",
        "phone": "+441632960000",
        # One term over the whole year: the demo runs in the holidays too (marks on a day
        # that is not a school day are refused).
        "calendar": {"terms": [{"start": year_start.isoformat(),
                                "end": (year_start + dt.timedelta(days=364)).isoformat()}],
                     "closures": []},
        # The people `make run` made sign-ins for (scripts/run-local.sh).
        "staff": [{"role": "attendance_officer", "name": "Demo Attendance Officer",
                   "email": "officer@demo.example"},
                  {"role": "dsl", "name": "Demo Safeguarding Lead", "email": "dsl@demo.example"}],
        "local_authority": LOCAL_AUTHORITY,
        "policy": {"first_day_contact": {"not_before": "00:00"}},
        "pupils": roster(),
    }


def _absent(days_back: range | tuple[int, ...], code: str) -> dict[int, str]:
    return dict.fromkeys(days_back, code)


# Earlier absences, by school days back from this morning (1 = the previous school day); whole
# days, and recent, so the rates rise through the term rather than hovering on a line.
PAST_ABSENCES: dict[str, dict[int, str]] = {
    # Not seen on the two previous school days and nobody has said why: this morning is day 3,
    # and the attendance officer gets a home visit task.
    "D007": _absent((1, 2), "N"),
    # Persistent absence (10% or more), mostly illness.
    "D009": _absent((2, 3, 6, 9, 13, 17), "I"),
    # A term-time holiday (a penalty notice candidate), and an N nobody has re-coded.
    "D010": {**_absent(range(10, 15), "G"), 7: "N"},
    "D011": _absent((4, 5, 8, 11, 12), "I"),
    # Severe absence (50% or more): most days of the last six weeks.
    "D012": {d: "I" if d % 7 == 0 else "O" for d in range(1, 31) if d % 5},
    # Ordinary pupils have the odd day off too.
    "D015": _absent((20,), "I"),
    "D018": _absent((3,), "M"),
    "D021": _absent((25, 26), "I"),
    "D026": _absent((15,), "R"),
}
# This morning's register: codes in the order they were recorded (an amendment comes second).
# D008 has no mark yet; everyone not listed is present.
TODAY: dict[str, tuple[str, ...]] = {
    "D001": ("N",),
    "D002": ("N",),  # the family prefers Welsh
    "D003": ("N", "I"),  # ...but the parent rang in: amended to illness, nobody is contacted
    "D004": ("N",),  # the first contact is under a court order: the second is used
    "D005": ("N",),  # looked after: the Virtual School and the social worker hear
    "D006": ("N",),  # has a social worker, who hears
    "D007": ("N",),  # day 3: home visit
    "D009": ("I",),
    "D011": ("L",),
    "D013": ("M",),
}
NOT_YET_MARKED = {"D008"}
UNEXPLAINED_TODAY = sorted(p for p, codes in TODAY.items() if codes[-1] == "N" and p != "D007")


def _mark(pupil_id: str, day: dt.date, session: str, code: str,
          recorded: dt.datetime) -> dict[str, object]:
    content = {"schema": "register.mark/v1", "school_urn": URN, "pupil_id": pupil_id,
               "date": day.isoformat(), "session": session, "code": code,
               "recorded_at": recorded.isoformat(),
               "minutes_late": 12 if code == "L" else None, "comment": None}
    event_id = uuid.uuid5(EVENT_IDS, json.dumps(content, sort_keys=True))
    return {**content, "event_id": str(event_id)}


def earlier_marks(days: list[dt.date]) -> list[dict[str, object]]:
    """Both sessions of every earlier day for every pupil, a day's registers at a time."""
    events = []
    for index, day in enumerate(days):
        back = len(days) - index
        for session, taken in (("AM", dt.time(8, 50)), ("PM", dt.time(13, 15))):
            recorded = dt.datetime.combine(day, taken, tzinfo=LONDON)
            for pupil in roster():
                pupil_id = str(pupil["id"])
                code = PAST_ABSENCES.get(pupil_id, {}).get(back, "/")
                events.append(_mark(pupil_id, day, session, code, recorded))
    return events


def morning_marks(day: dt.date) -> list[dict[str, object]]:
    # Registers are taken around 08:50; before then (a demo run at night) use "just now".
    taken = min(dt.datetime.combine(day, dt.time(8, 50), tzinfo=LONDON),
                _now() - dt.timedelta(minutes=10))
    events = []
    for pupil in roster():
        pupil_id = str(pupil["id"])
        if pupil_id in NOT_YET_MARKED:
            continue
        for minutes, code in enumerate(TODAY.get(pupil_id, ("/",))):
            events.append(_mark(pupil_id, day, "AM", code,
                                taken + dt.timedelta(minutes=5 * minutes)))
    return events


def _batches(events: list[dict[str, object]]) -> Iterator[list[dict[str, object]]]:
    for start in range(0, len(events), BATCH):
        yield events[start:start + BATCH]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"Gave up waiting for {what} after {timeout:.0f} s: is `make run` running?")
        time.sleep(0.3)  # the services have no event a client could wait on


def publish_history(client: httpx.Client, triage: str, day: dt.date) -> None:
    days = earlier_school_days(day)
    events = earlier_marks(days)
    for batch in _batches(events):
        client.post(f"{triage}/api/v1/events", json=batch).raise_for_status()
    if not events:
        return
    # Applied in the order published: once the last pupil's last session counts, all do. This
    # morning's marks must come after, or a pupil away since yesterday looks newly absent.
    last = str(events[-1]["pupil_id"])

    def counted() -> bool:
        timeline = client.get(f"{triage}/api/v1/pupils/{last}/timeline",
                              params={"school_urn": URN})
        return (timeline.status_code == 200
                and timeline.json()["rates"]["possible_sessions"] >= 2 * len(days))

    _wait(counted, 20, "triage to apply the earlier marks")
    print(f"Published {len(events)} register marks for the {len(days)} school days "
          f"from {days[0]} to {days[-1]}.")


def _notifications(client: httpx.Client, notifier: str) -> list[dict[str, Any]]:
    response = client.get(f"{notifier}/api/v1/notifications", params={"school_urn": URN})
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()
    return rows


def wait_for_the_morning(client: httpx.Client, triage: str,
                         notifier: str) -> list[dict[str, Any]]:
    """Until every unexplained absence has its first-day contact, the home visit task is open
    and nothing is pending; or nothing has changed for a few seconds (texts held for quiet
    hours stay pending until the window opens)."""
    deadline = time.monotonic() + 20
    latest: list[dict[str, Any]] = []
    unchanged = 0
    while time.monotonic() < deadline and unchanged < 10:
        previous, latest = latest, _notifications(client, notifier)
        contacted = {p for n in latest if n["rule"] == "first_day_contact"
                     for p in n["pupil_ids"]}
        tasks = client.get(f"{triage}/api/v1/tasks",
                           params={"school_urn": URN, "status": "open"}).json()
        visit = any(t["kind"] == "home_visit" and t["pupil_id"] == "D007" for t in tasks)
        settled = all(n["status"] != "pending" for n in latest)
        if visit and contacted >= set(UNEXPLAINED_TODAY) and settled and latest == previous:
            break
        unchanged = unchanged + 1 if latest == previous else 0
        time.sleep(0.5)
    return latest


def parent_replies(client: httpx.Client, notifier: str, day: dt.date,
                   sent: list[dict[str, Any]]) -> str:
    """An inbound SMS from the parent texted about D001, posted to the notifier's webhook and
    signed as Twilio signs it (docs/contract.md §5). Says what happened."""
    token = _twilio_token()
    if token is None:
        return ("No parent reply: the notifier has no local TWILIO_AUTH_TOKEN to sign one with "
                "(`make run` makes one when no Twilio account is configured).")
    texts = [n for n in sent if n["rule"] == "first_day_contact" and n["channel"] == "sms"
             and REPLYING in n["pupil_ids"] and n["status"] in ("sent", "written", "delivered")]
    if not texts:
        return ("No parent reply: the first-day text has not gone out yet (quiet hours or a "
                "day that is not a school day); run 'make demo' again once it has.")
    # Fixed per day: a second run replays the same message, which the notifier ignores.
    sid = "SM" + hashlib.sha256(f"demo-reply:{URN}:{day}".encode()).hexdigest()[:32]
    params = {"MessageSid": sid, "From": texts[0]["to"], "To": "+441632960000",
              "Body": "Sorry, she was sick in the night. She'll be back tomorrow."}
    url = os.environ.get("PUBLIC_BASE_URL", "http://localhost:8002").rstrip("/")
    signature = RequestValidator(token).compute_signature(url + "/twilio/inbound", params)
    response = client.post(f"{notifier}/twilio/inbound", data=params,
                           headers={"X-Twilio-Signature": signature})
    if response.status_code != 200:
        return (f"No parent reply: the notifier answered {response.status_code} (is its "
                "TWILIO_AUTH_TOKEN the one in var/twilio-auth-token?).")
    return "A parent replied to the first-day text about Amelia Hughes."


def _summary(sent: list[dict[str, Any]]) -> list[str]:
    by_rule = Counter((n["rule"], n["status"]) for n in sent)
    return [f"  {rule}: {count} {status}" for (rule, status), count in sorted(by_rule.items())]


def main() -> None:
    triage = os.environ.get("TRIAGE_URL", f"http://127.0.0.1:{os.environ.get('TRIAGE_PORT', '8001')}")
    notifier = os.environ.get("NOTIFIER_URL",
                              f"http://127.0.0.1:{os.environ.get('NOTIFIER_PORT', '8002')}")
    staff = f"http://127.0.0.1:{os.environ.get('STAFF_PORT', '8003')}"
    headers = {"Authorization": f"Bearer {_token()}"}
    day = _school_day(_now().astimezone(LONDON).date())
    with httpx.Client(headers=headers, timeout=30) as client:
        response = client.put(f"{triage}/api/v1/schools/{URN}", json=sample_school(day))
        response.raise_for_status()
        print(f"Loaded {response.json()['pupils']} pupils of Demo Primary School (URN {URN}).")
        publish_history(client, triage, day)
        morning = morning_marks(day)
        client.post(f"{triage}/api/v1/events", json=morning).raise_for_status()
        print(f"Published {len(morning)} register marks for the morning of {day}.")
        sent = wait_for_the_morning(client, triage, notifier)
        reply = parent_replies(client, notifier, day, sent)
    print("\nMessages so far, by rule:")
    print("\n".join(_summary(sent)))
    print(f"\n{reply}")
    outbox = os.environ.get("OUTBOX_DIR", "var/outbox")
    print(f"Messages marked `written` were not sent to anyone: with no Twilio or SMTP "
          f"configured they are in {outbox}/ (one file each).")
    if any(n["status"] == "pending" for n in sent):
        print("Texts still pending are held for quiet hours or a non-school day; they go out "
              "when the school's contact window opens (08:00 on the next school day).")
    print(f"\nOn the staff screens ({staff}/, sign in as officer@demo.example): today's "
          "unexplained absences and who has been contacted, a pupil with no mark yet, a home "
          "visit task, the attendance lists; as social.worker@demo.example: 'My pupils'.")


if __name__ == "__main__":
    main()
