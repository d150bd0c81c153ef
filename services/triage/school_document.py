"""The school document uploaded with `PUT /api/v1/schools/{urn}` (docs/contract.md §3)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker_messages.events import Identifier, Urn, printable
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from triage.policy import Policy

E164 = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")]


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


class Pupil(_Strict):
    id: Identifier
    given_name: SingleLineName
    family_name: SingleLineName
    year_group: Annotated[int, Field(ge=-2, le=14)] | None = None
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
