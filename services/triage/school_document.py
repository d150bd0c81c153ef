"""The school document uploaded with `PUT /api/v1/schools/{urn}` (docs/contract.md §3)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from broker_messages.events import Identifier, Urn, printable
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from triage.policy import Policy

# Numbers without a country code are read as UK numbers.
DEFAULT_REGION = "GB"


def _parsed(value: str) -> phonenumbers.PhoneNumber | None:
    """The number, if the library's number plan knows it, or it has the full length of its
    country's mobile numbers: Ofcom's ranges for drama and documentation (07700 900xxx,
    01632 960xxx) are unknown to the plan yet are what schools test and train with. A short
    local number (`960123`, no area code) is refused: nobody could dial it from elsewhere."""
    try:
        number = phonenumbers.parse(value, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    known = phonenumbers.is_valid_number(number) or phonenumbers.is_possible_number_for_type(
        number, phonenumbers.PhoneNumberType.MOBILE)
    return number if known else None


def _e164(value: object, info: ValidationInfo) -> object:
    """National formats (`07700 900123`, `01632 960123`) and international ones
    (`+44 7700 900123`) are accepted and stored as E.164 (`+447700900123`)."""
    if not isinstance(value, str) or (info.context and info.context.get("stored")):
        return value  # a stored record was normalised when it was uploaded
    number = _parsed(value)
    if number is None:
        raise ValueError("not a phone number we can call or text (write it as 07700 900123, "
                         "01632 960123 or +44 7700 900123)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


E164 = Annotated[str, BeforeValidator(_e164), Field(pattern=r"^\+[1-9][0-9]{6,14}$")]


@functools.lru_cache(maxsize=65536)
def is_landline(e164: str) -> bool:
    """A fixed line, by the library's number plan: it cannot take a text message. A number the
    plan cannot place (a drama range) or one that may be either is treated as a mobile."""
    number = _parsed(e164)
    return (number is not None
            and phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE)


@functools.lru_cache(maxsize=65536)
def _email_problem(value: str) -> str | None:
    """A maintained validator, not a regular expression: `x(y)@a.example` (a comment, mail
    went to `x@a.example`) and `g:evil@attacker.example` (a group, mail went to the attacker)
    passed the old pattern. Display names, quoted and other odd local parts are refused.
    Cached: triage types every roster record its batches touch, and addresses repeat."""
    try:
        validate_email(value, check_deliverability=False, allow_display_name=False,
                       allow_quoted_local=False, allow_domain_literal=False)
    except EmailNotValidError as error:
        return str(error)
    return None


def _deliverable_form(value: str, info: ValidationInfo) -> str:
    if info.context and info.context.get("stored"):
        return value  # checked when it was uploaded (see `stored_pupil`)
    if (problem := _email_problem(value)) is not None:
        raise ValueError(f"not a usable email address: {problem}")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_deliverable_form)]

# Line and paragraph separators end a line in an email header or a text as surely as "\n"
# does (a name with U+2028 made every email to that family fail); the bidi marks reorder
# what staff read. Control characters and bidi overrides are refused by `printable`.
_LINE_BREAKING = re.compile(r"[\n\r\u2028\u2029\u200e\u200f\u061c]")


def _no_newlines(value: str) -> str:
    if _LINE_BREAKING.search(value):
        raise ValueError("must be a single line without line or paragraph separators or "
                         "bidirectional marks")
    return value


# The length first, then the Python checks: a length limit placed after a Python validator
# (as `Annotated[FreeText, Field(...)]` would) runs in Python too, and triage types every
# roster record its batches touch.
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(printable)]
SingleLineName = Annotated[Name, AfterValidator(_no_newlines)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Term(_Strict):
    start: dt.date
    end: dt.date


class Calendar(_Strict):
    terms: list[Term] = Field(min_length=1, max_length=12)
    closures: list[dt.date] = Field(default_factory=list, max_length=400)

    @field_validator("terms")
    @classmethod
    def _terms_in_order(cls, terms: list[Term]) -> list[Term]:
        for term in terms:
            if term.end < term.start:
                raise ValueError(f"term ending {term.end} starts after it ends")
        return terms


class StaffMember(_Strict):
    role: Literal["attendance_officer", "dsl", "headteacher"]
    name: SingleLineName
    email: Email
    phone: E164 | None = None


class LocalAuthority(_Strict):
    name: SingleLineName
    attendance_team_email: Email | None = None
    send_team_email: Email | None = None
    virtual_school_email: Email | None = None


class SocialWorker(_Strict):
    name: SingleLineName
    email: Email
    phone: E164 | None = None


class Contact(_Strict):
    name: SingleLineName
    relationship: Annotated[str, Field(max_length=50)] | None = None
    priority: Annotated[int, Field(ge=1, le=20)]
    phone: E164 | None = None
    email: Email | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")] = "en"
    no_contact: bool = False
    attendance_updates: bool = False


# What MIS exports write for the years before Year 1.
_EARLY_YEARS = {"N1": -2, "N2": -1, "R": 0}


def _year_group(value: object) -> object:
    """`R` (Reception) is year 0 and nursery `N1`/`N2` are −2/−1; numbers (or `Y3`, `Year 3`)
    stay numbers."""
    if isinstance(value, str):
        text = value.strip().upper().removeprefix("YEAR").removeprefix("Y").strip()
        if text in _EARLY_YEARS:
            return _EARLY_YEARS[text]
        if text.lstrip("-").isdigit():
            return int(text)
        raise ValueError("not a year group (R for Reception, N1 or N2 for nursery, or 1–14)")
    return value


YearGroup = Annotated[int, BeforeValidator(_year_group), Field(ge=-2, le=14)]


class Pupil(_Strict):
    id: Identifier
    given_name: SingleLineName
    family_name: SingleLineName
    year_group: YearGroup | None = None
    social_worker: SocialWorker | None = None
    looked_after: bool = False
    ehcp: bool = False
    contacts: list[Contact] = Field(default_factory=list, max_length=10)


def stored_pupil(record: dict[str, Any]) -> Pupil:
    """A roster record as stored, typed. It was validated in full when its school was uploaded;
    the email validator is not run again (23 us for each new address, on every pupil a cold
    triage process meets on a busy morning)."""
    return Pupil.model_validate(record, context={"stored": True})


def without_usable_contact(pupils: list[Pupil]) -> list[str]:
    """Pupils whose family nobody could contact: no contacts, every one under `no_contact`, or
    none with a phone number or email address (docs/rules.md "family_unreachable")."""
    return [pupil.id for pupil in pupils
            if not any(not c.no_contact and (c.phone or c.email) for c in pupil.contacts)]


class SchoolDocument(_Strict):
    urn: Urn
    name: SingleLineName
    timezone: str = "Europe/London"
    # Which bank holidays are not school days (the `holidays` package's GB subdivisions).
    country: Literal["england", "wales"] = "england"
    phone: E164 | None = None
    calendar: Calendar
    staff: list[StaffMember] = Field(default_factory=list, max_length=50)
    local_authority: LocalAuthority | None = None
    policy: Policy = Policy()
    # Required: the document replaces the roster, and a body without the list took every
    # pupil off roll. An empty list is still allowed, said on purpose.
    pupils: list[Pupil] = Field(max_length=5000)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def duplicate_pupil_problems(raw: object) -> list[dict[str, object]]:
    """Duplicate pupil ids, found on the raw body so they are listed with every other problem."""
    if not isinstance(raw, dict) or not isinstance(raw.get("pupils"), list):
        return []
    seen: dict[str, int] = {}
    problems: list[dict[str, object]] = []
    for index, pupil in enumerate(raw["pupils"]):
        pupil_id = pupil.get("id") if isinstance(pupil, dict) else None
        if not isinstance(pupil_id, str):
            continue
        if pupil_id in seen:
            problems.append(
                {
                    "loc": ["body", "pupils", index, "id"],
                    "msg": f"duplicate pupil id {pupil_id!r} (first at index {seen[pupil_id]})",
                    "type": "duplicate",
                }
            )
        else:
            seen[pupil_id] = index
    return problems


def _field_words(loc: list[object]) -> str:
    """`["contacts", 0, "phone"]` → `contact 1 phone`: positions counted from 1, as a school
    office counts the rows of its export."""
    words: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int):
            continue
        text = str(part).replace("_", " ")
        following = loc[index + 1] if index + 1 < len(loc) else None
        if isinstance(following, int):
            text = f"{text.removesuffix('s')} {following + 1}"
        words.append(text)
    return " ".join(words) or "the document"


def in_words(problems: list[dict[str, Any]], raw: object,
             pupil_id: str | None = None) -> list[dict[str, Any]]:
    """Each problem's `msg` prefixed with where it is, in words a school office understands
    (`pupil P0003: contact 1 phone: …`); `loc` stays for machines. `pupil_id`: the body is one
    pupil's record (`/schools/{urn}/pupils/{id}`)."""
    worded = []
    for problem in problems:
        loc = list(problem["loc"])
        rest = loc[1:] if loc[:1] == ["body"] else loc
        who = pupil_id
        if pupil_id is None and rest[:1] == ["pupils"] and len(rest) > 1:
            found = _raw_pupil(raw, rest[1])
            who = found if found is not None else f"at position {_position(rest[1])}"
            rest = rest[2:]
        where = _field_words(rest) if loc[:1] == ["body"] else " ".join(map(str, loc))
        if who is not None:
            where = f"pupil {who}: {where}" if rest else f"pupil {who}"
        msg = str(problem["msg"]).removeprefix("Value error, ")
        worded.append({**problem, "msg": f"{where}: {msg}"})
    return worded


def _raw_pupil(raw: object, index: object) -> str | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("pupils"), list):
        return None
    pupils = raw["pupils"]
    if not isinstance(index, int) or not 0 <= index < len(pupils):
        return None
    found = pupils[index].get("id") if isinstance(pupils[index], dict) else None
    return found if isinstance(found, str) and found.strip() else None


def _position(index: object) -> object:
    return index + 1 if isinstance(index, int) else index
