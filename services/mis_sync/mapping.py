"""Wonde's records in the contract's shapes: attendance codes through their statistical
meaning, session attendance as `register.mark/v1` events, students and their contacts as the
school document's pupils (docs/contract.md §2, §3).

Everything here is pure. A record that cannot be used whole is left out or trimmed, never
sent half-valid: one bad field in a school document makes triage refuse the whole upload."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from broker_messages.codes import CODE_CATEGORIES, LEGACY_CODES, Category, canonical_code
from email_validator import EmailNotValidError, validate_email

Record = dict[str, Any]

# Wonde's statistical meaning of a school's attendance code (`type` on /attendance-codes), as
# the DfE counts it.
MEANINGS: dict[str, Category] = {
    "PRESENT": Category.PRESENT,
    "LATE": Category.PRESENT,
    "APPROVED_EDUCATIONAL_ACTIVITY": Category.APPROVED_ACTIVITY,
    "AUTHORISED_ABSENCE": Category.AUTHORISED,
    "UNAUTHORISED_ABSENCE": Category.UNAUTHORISED,
    "ATTENDANCE_NOT_REQUIRED": Category.NOT_POSSIBLE,
}
# A school's own code (or a national code it counts differently) is sent as the national code
# that means "any other" of its kind (docs/rules.md "Register codes"). There is no "other" for
# sessions not counted, so such a code is left out and logged rather than guessed.
STAND_INS: dict[str, str] = {
    "PRESENT": "/",
    "LATE": "L",
    "APPROVED_EDUCATIONAL_ACTIVITY": "B",
    "AUTHORISED_ABSENCE": "C",
    "UNAUTHORISED_ABSENCE": "O",
}

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c"
                          r"\u202a-\u202e\u2066-\u2069]")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
MAX_CONTACTS = 10
MAX_COMMENT = 2000


def register_code(code: str, meaning: str | None) -> str | None:
    """The code to send for a MIS code whose statistical meaning Wonde gives, or None when
    it cannot be mapped (no mark yet, a meaning we do not know, an uncounted code of the
    school's own)."""
    code = code.strip()
    category = MEANINGS.get(meaning or "")
    if category is None:
        return None
    known = code in CODE_CATEGORIES or code in LEGACY_CODES
    if known and CODE_CATEGORIES[canonical_code(code)] is category:
        return code  # two-character national codes (C1, J1, Y1 …) included
    return STAND_INS.get(meaning or "")


def wonde_time(value: object) -> dt.datetime | None:
    """Wonde's date object (`{"date": "2026-11-23 08:52:10.000000", "timezone": …}`) or an
    ISO string, as an aware UTC timestamp."""
    text, zone = (value.get("date"), value.get("timezone")) if isinstance(value, dict) \
        else (value, None)
    if not isinstance(text, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        try:
            parsed = parsed.replace(tzinfo=ZoneInfo(zone) if isinstance(zone, str) else dt.UTC)
        except (ZoneInfoNotFoundError, ValueError):
            return None
    return parsed.astimezone(dt.UTC)


def _reference(value: object) -> str | None:
    """A related record's id, whether Wonde sent the id or the included object."""
    if isinstance(value, dict):
        value = value.get("data", value)
        value = value.get("id") if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def event_id(*parts: object) -> str:
    """The same record in the same state always gives the same id: a re-sync publishes
    nothing triage has not seen (it acknowledges a duplicate and changes nothing)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"wonde-{digest[:40]}"


def mark_event(school_urn: str, record: Record, codes: dict[str, Record]) -> Record | None:
    """A `register.mark/v1` event for one Wonde session attendance record, or None when it
    cannot be one (see `skip_reason`)."""
    if skip_reason(record, codes) is not None:
        return None
    attendance_code = codes[_reference(record.get("attendance_code")) or ""]
    code = register_code(str(attendance_code.get("code", "")), attendance_code.get("type"))
    day = wonde_time(record.get("date"))
    recorded = wonde_time(record.get("updated_at")) or wonde_time(record.get("created_at"))
    assert code is not None and day is not None and recorded is not None
    minutes = record.get("minutes_late")
    minutes_late = min(max(minutes, 0), 600) if isinstance(minutes, int) and minutes else None
    comment = record.get("comment")
    comment = (comment.strip()[:MAX_COMMENT] or None) if isinstance(comment, str) \
        and not _UNPRINTABLE.search(comment.replace("\n", "").replace("\t", "")) else None
    # The session's date is the school-local calendar date Wonde gives, whatever its zone.
    local_day = dt.datetime.fromisoformat(str(_date_text(record.get("date")))).date()
    pupil_id = _reference(record.get("student"))
    session = str(record.get("session", "")).upper()
    return {
        "schema": "register.mark/v1",
        "event_id": event_id(school_urn, record.get("id"), recorded.isoformat(), code,
                             minutes_late, comment),
        "school_urn": school_urn, "pupil_id": pupil_id, "date": local_day.isoformat(),
        "session": session, "code": code, "recorded_at": recorded.isoformat(),
        "minutes_late": minutes_late, "comment": comment, "source": "wonde",
    }


def _date_text(value: object) -> object:
    text = value.get("date") if isinstance(value, dict) else value
    return text[:10] if isinstance(text, str) else None


def skip_reason(record: Record, codes: dict[str, Record]) -> str | None:
    """Why a session attendance record is not sent, in words for the log (no personal
    data: codes and field names only)."""
    pupil_id = _reference(record.get("student"))
    if pupil_id is None or not _IDENTIFIER.match(pupil_id):
        return "no usable student id"
    if str(record.get("session", "")).upper() not in ("AM", "PM"):
        return "session is not AM or PM"
    try:
        dt.date.fromisoformat(str(_date_text(record.get("date"))))
    except ValueError:
        return "no usable date"
    if wonde_time(record.get("updated_at")) is None and wonde_time(
            record.get("created_at")) is None:
        return "no updated_at"
    attendance_code = codes.get(_reference(record.get("attendance_code")) or "")
    if attendance_code is None:
        return "attendance code not in /attendance-codes"
    if register_code(str(attendance_code.get("code", "")), attendance_code.get("type")) is None:
        return (f"code {str(attendance_code.get('code'))[:8]!r} means "
                f"{str(attendance_code.get('type'))[:40]!r}: not mapped")
    return None


def single_line(value: object, limit: int = 200) -> str:
    """A name as the school document takes it: one line, printable, at most `limit`."""
    if not isinstance(value, str):
        return ""
    return " ".join(_UNPRINTABLE.sub(" ", value).split())[:limit].strip()


@functools.lru_cache(maxsize=4096)
def usable_email(value: str) -> str | None:
    """Checked as triage checks it (triage/school_document.py), so it is not refused there."""
    try:
        validate_email(value, check_deliverability=False, allow_display_name=False,
                       allow_quoted_local=False, allow_domain_literal=False)
    except EmailNotValidError:
        return None
    return value if 3 <= len(value) <= 254 else None


def usable_phone(value: str) -> str | None:
    """E.164, read as a UK number unless it says otherwise. A possible number (the right
    length for its country), not only an allocated one: the MIS already holds it as the
    family's, and Ofcom's drama range (07700 900xxx) must pass for tests and demos."""
    try:
        number = phonenumbers.parse(value, "GB")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _details(contact: Record, group: str) -> Record:
    details = contact.get("contact_details")
    data = details.get("data", details) if isinstance(details, dict) else None
    found = data.get(group) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}


def _first(values: Iterable[object], check: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip() and (usable := check(value.strip())):
            return str(usable)
    return None


def _flag(*values: object) -> bool:
    return any(value is True or (isinstance(value, str) and value.lower() in ("true", "1",
                                                                              "yes", "y"))
               for value in values)


def _priority(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 99


def contacts(student: Record) -> list[Record]:
    """The student's contacts for the school document: those with parental responsibility
    first, then in the MIS's priority order, renumbered 1…; a court order or a no-contact
    flag makes a contact `no_contact`."""
    included = student.get("contacts")
    records = included.get("data", []) if isinstance(included, dict) else []
    chosen: list[tuple[tuple[bool, int, str], Record]] = []
    for contact in records if isinstance(records, list) else []:
        if not isinstance(contact, dict):
            continue
        relation = contact.get("relationship")
        relation = relation if isinstance(relation, dict) else {}
        name = single_line(f"{contact.get('forename') or ''} {contact.get('surname') or ''}")
        if not name:
            continue
        phones = _details(contact, "telephones")
        emails = _details(contact, "emails")
        language = str(contact.get("language") or "").strip().lower()
        record: Record = {
            "name": name,
            "relationship": single_line(relation.get("relationship"), 50) or None,
            "phone": _first((phones.get(k) for k in ("mobile", "primary", "phone", "home",
                                                     "work")), usable_phone),
            "email": _first((emails.get(k) for k in ("primary", "email", "home", "work")),
                            usable_email),
            "language": language if _LANGUAGE.match(language) else "en",
            "no_contact": _flag(relation.get("court_order"), relation.get("no_contact"),
                                contact.get("court_order"), contact.get("no_contact")),
        }
        order = (not _flag(relation.get("parental_responsibility")),
                 _priority(relation.get("priority")), str(contact.get("id", "")))
        chosen.append((order, record))
    chosen.sort(key=lambda pair: pair[0])
    return [{**record, "priority": rank}
            for rank, (_, record) in enumerate(chosen[:MAX_CONTACTS], start=1)]


def pupil(student: Record) -> Record | None:
    """A roster record, or None for a student without a usable id or name."""
    pupil_id = student.get("id")
    given = single_line(student.get("forename")) or single_line(student.get("legal_forename"))
    family = single_line(student.get("surname")) or single_line(student.get("legal_surname"))
    if not (isinstance(pupil_id, str) and _IDENTIFIER.match(pupil_id) and given and family):
        return None
    return {"id": pupil_id, "given_name": given, "family_name": family,
            "contacts": contacts(student)}


def updated_times(student: Record) -> list[dt.datetime]:
    """When the student and each included contact last changed, as Wonde says."""
    included = student.get("contacts")
    records = included.get("data", []) if isinstance(included, dict) else []
    times = [wonde_time(r.get("updated_at")) for r in [student, *records] if isinstance(r, dict)]
    return [t for t in times if t is not None]
