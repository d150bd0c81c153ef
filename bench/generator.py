"""A deterministic local authority and one morning of register marks.

Families are the unit of absence: siblings go to the same school, share their contacts and
are usually absent together (a stomach bug, a family holiday), which is what makes the
sibling rule (docs/rules.md "Contacting people") matter at scale."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
PUPILS_PER_SCHOOL = 350
# Family sizes (children) and contacts per family, as weights.
CHILDREN = ((1, 0.60), (2, 0.30), (3, 0.10))
CONTACTS = ((1, 0.30), (2, 0.60), (3, 0.10))
# An absent family keeps a child at home with this probability, so pupil-level absence is
# ABSENT_FAMILY_RATE * SIBLING_ABSENT ~ 7% while absences cluster by family.
SIBLING_ABSENT = 0.8
# The code a family's absence is first recorded with: mostly N (nobody has called yet).
ABSENCE_CODES = (("N", 0.60), ("I", 0.25), ("M", 0.05), ("C", 0.05), ("G", 0.05))
AMENDED_TO = ("I", "M", "C", "O")
GIVEN = ("Amira", "Ben", "Chloe", "Dylan", "Ella", "Finn", "Grace", "Harry", "Isla", "Jack",
         "Keira", "Leo", "Maya", "Noah", "Olivia", "Priya", "Ravi", "Sofia", "Tom", "Zara")
FAMILY = ("Ahmed", "Brown", "Clarke", "Davies", "Evans", "Green", "Hughes", "Jones", "Khan",
          "Lewis", "Patel", "Roberts", "Smith", "Taylor", "Walker", "Wilson", "Wright")


@dataclass
class Authority:
    """One local authority's schools and one morning's AM marks (JSON-ready dicts)."""

    day: dt.date
    schools: list[dict[str, Any]]
    marks: list[dict[str, Any]]
    amendments: list[dict[str, Any]]
    # (urn, pupil_id) -> family number; families never span schools.
    family_of: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def pupil_count(self) -> int:
        return sum(len(s["pupils"]) for s in self.schools)

    def events(self) -> list[dict[str, Any]]:
        """The burst, then the amendments trickling in after it."""
        return self.marks + self.amendments

    def final_codes(self) -> dict[tuple[str, str], str]:
        """AM code per pupil after amendments (the later `recorded_at` wins, docs/contract.md §2)."""
        latest: dict[tuple[str, str], tuple[str, str]] = {}
        for event in self.events():
            key = (event["school_urn"], event["pupil_id"])
            if key not in latest or latest[key][0] < event["recorded_at"]:
                latest[key] = (event["recorded_at"], event["code"])
        return {key: code for key, (_, code) in latest.items()}


def _weighted(rng: random.Random, table: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def generate(
    *,
    seed: int,
    schools: int,
    pupils: int,
    day: dt.date,
    recorded_from: dt.datetime,
    policy: dict[str, Any] | None = None,
    absent_rate: float = 0.07,
    social_worker_rate: float = 0.03,
    amended_share: float = 0.10,
    no_contact_rate: float = 0.01,
    terms: list[dict[str, str]] | None = None,
    first_urn: int = 300000,
) -> Authority:
    """`pupils` spread evenly over `schools`; AM marks recorded within 30 minutes of
    `recorded_from`, amendments 2–20 minutes after the mark they re-code. `first_urn`: where
    the schools' URNs start, so two authorities of different sizes can share one database."""
    rng = random.Random(seed)
    ids = random.Random(seed + 1)  # event ids: deterministic, independent of the draws above
    family_absent_rate = absent_rate / SIBLING_ABSENT
    documents: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    family_of: dict[tuple[str, str], int] = {}
    family_no = contact_no = pupil_no = 0
    for index in range(schools):
        urn = f"{first_urn + index}"
        roster: list[dict[str, Any]] = []
        size = pupils // schools + (1 if index < pupils % schools else 0)
        while len(roster) < size:
            family_no += 1
            surname = rng.choice(FAMILY)
            contacts = []
            for priority in range(1, _weighted(rng, CONTACTS) + 1):
                contact_no += 1
                contacts.append({
                    "name": f"{rng.choice(GIVEN)} {surname}", "relationship": "parent",
                    "priority": priority, "phone": f"+4474{contact_no:08d}",
                    "email": f"contact{contact_no}@family.example",
                    "language": "cy" if rng.random() < 0.02 else "en",
                    "no_contact": priority == 1 and rng.random() < no_contact_rate,
                    "attendance_updates": False,
                })
            absent = rng.random() < family_absent_rate
            code = _weighted(rng, ABSENCE_CODES) if absent else "/"
            for _ in range(min(_weighted(rng, CHILDREN), size - len(roster))):
                pupil_no += 1
                pupil_id = f"P{pupil_no:07d}"
                record: dict[str, Any] = {
                    "id": pupil_id, "given_name": rng.choice(GIVEN), "family_name": surname,
                    "year_group": rng.randint(0, 11), "looked_after": False, "ehcp": False,
                    "contacts": contacts,
                }
                if rng.random() < social_worker_rate:
                    record["social_worker"] = {"name": "A Worker",
                                               "email": f"sw{pupil_no}@la.example"}
                roster.append(record)
                family_of[(urn, pupil_id)] = family_no
                child_code = code if absent and rng.random() < SIBLING_ABSENT else (
                    "L" if rng.random() < 0.02 else "/")
                recorded = recorded_from + dt.timedelta(seconds=rng.randint(0, 1800))
                marks.append(_mark(ids, urn, pupil_id, day, child_code, recorded))
        documents.append(_school(urn, index, roster, policy or {}, terms or _terms_around(day)))
    unexplained = [m for m in marks if m["code"] == "N"]
    amended = rng.sample(unexplained, round(len(unexplained) * amended_share))
    amendments = [
        _mark(ids, m["school_urn"], m["pupil_id"], day, rng.choice(AMENDED_TO),
              dt.datetime.fromisoformat(m["recorded_at"])
              + dt.timedelta(seconds=rng.randint(120, 1200)))
        for m in amended
    ]
    amendments.sort(key=lambda m: m["recorded_at"])
    return Authority(day=day, schools=documents, marks=marks, amendments=amendments,
                     family_of=family_of)


def _terms_around(day: dt.date) -> list[dict[str, str]]:
    return [{"start": (day - dt.timedelta(days=60)).isoformat(),
             "end": (day + dt.timedelta(days=60)).isoformat()}]


def _mark(ids: random.Random, urn: str, pupil_id: str, day: dt.date, code: str,
          recorded: dt.datetime) -> dict[str, Any]:
    return {"schema": "register.mark/v1", "event_id": str(uuid.UUID(int=ids.getrandbits(128))),
            "school_urn": urn, "pupil_id": pupil_id, "date": day.isoformat(), "session": "AM",
            "code": code, "recorded_at": recorded.astimezone(dt.UTC).isoformat(),
            "minutes_late": None, "comment": None}


def _school(urn: str, index: int, roster: list[dict[str, Any]], policy: dict[str, Any],
            terms: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "urn": urn, "name": f"Bench School {index + 1}", "timezone": "Europe/London",
        "phone": f"+44123{index:07d}",
        "calendar": {"terms": terms, "closures": []},
        "staff": [{"role": "attendance_officer", "name": "Attendance Officer",
                   "email": f"attendance{urn}@school.example"},
                  {"role": "dsl", "name": "Safeguarding Lead", "email": f"dsl{urn}@school.example"}],
        "local_authority": {"name": "Bench LA", "attendance_team_email": "attendance@la.example"},
        "policy": policy,
        "pupils": roster,
    }


def encode(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(event, separators=(",", ":")).encode() for event in events]


# --- what the system must send ---------------------------------------------------------------

def first_reachable_phone(contacts: list[dict[str, Any]]) -> str | None:
    """docs/rules.md "Contacting people": contacts in priority order, `no_contact` never used; the first SMS goes to
    the first contact that may be texted."""
    for contact in sorted(contacts, key=lambda c: int(c["priority"])):
        if not contact.get("no_contact") and contact.get("phone"):
            return str(contact["phone"])
    return None


def first_day_absences(authority: Authority, amended: bool = True) -> set[tuple[str, str]]:
    """(urn, pupil_id) of every pupil whose AM mark is N (once amendments are in, unless
    `amended` is False): each gets a first-day action, whether or not anyone in the family
    may be contacted (docs/rules.md "family_unreachable")."""
    codes = authority.final_codes() if amended else {
        (m["school_urn"], m["pupil_id"]): m["code"] for m in authority.marks}
    return {key for key, code in codes.items() if code == "N"}


def expected_first_day_sms(authority: Authority,
                           pupils: set[tuple[str, str]] | None = None,
                           amended: bool = True) -> dict[tuple[str, str], str]:
    """(urn, pupil_id) -> the phone that must get exactly one first-day SMS naming the pupil:
    AM mark N and not amended away (docs/rules.md "The rules" first_day_contact)."""
    records = {(s["urn"], p["id"]): p for s in authority.schools for p in s["pupils"]}
    expected = {}
    for key in first_day_absences(authority, amended):
        if pupils is not None and key not in pupils:
            continue
        phone = first_reachable_phone(records[key]["contacts"])
        if phone:
            expected[key] = phone
    return expected


def sibling_groups(expected: dict[tuple[str, str], str]) -> dict[tuple[str, str], set[str]]:
    """docs/rules.md "Siblings": (urn, phone) -> the pupils one merged message should name."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (urn, pupil_id), phone in expected.items():
        groups[(urn, phone)].add(pupil_id)
    return groups
