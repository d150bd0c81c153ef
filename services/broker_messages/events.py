"""Input events on `attendance.events` (docs/contract.md §2)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from broker_messages.codes import CODE_CATEGORIES, LEGACY_CODES

# Control characters (tab and newline aside) and bidi overrides have no business in an id or a
# free-text field that staff will read. One regular expression: a per-character Python check
# cost triage a fifth of its rate once it typed each batch's roster records (`make bench`).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# A register date before this is a typing or clock error, not a school record; and dates
# far outside the calendar broke date arithmetic downstream (0001-03-01 crashed the handler).
EARLIEST_DATE = dt.date(2000, 1, 1)
# A mark is recorded on the day of its session or after; a few days early allows for
# absences entered ahead (a known appointment), no more.
MAX_DAYS_RECORDED_AHEAD = 7


def printable(value: str) -> str:
    if _UNPRINTABLE.search(value):
        raise ValueError("contains control or bidirectional-override characters")
    return value


def _known_code(value: str) -> str:
    if value not in CODE_CATEGORIES and value not in LEGACY_CODES:
        raise ValueError(f"unknown register code {value!r}")
    return value


Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
]
Urn = Annotated[str, Field(pattern=r"^[0-9]{6,8}$")]
FreeText = Annotated[str, Field(max_length=2000), AfterValidator(printable)]
RegisterCode = Annotated[str, Field(max_length=3), AfterValidator(_known_code)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, str_strip_whitespace=True)

    event_id: Identifier
    school_urn: Urn
    pupil_id: Identifier
    date: Annotated[dt.date, Field(ge=EARLIEST_DATE)]


class RegisterMark(_Event):
    schema_: Literal["register.mark/v1"] = Field(alias="schema")
    session: Literal["AM", "PM"]
    code: RegisterCode
    recorded_at: AwareDatetime
    minutes_late: Annotated[int, Field(ge=0, le=600)] | None = None
    comment: FreeText | None = None
    # Where the mark came from (e.g. "mis", "csv-import", "api"), for the pupil's record.
    source: Identifier | None = None

    @field_validator("recorded_at")
    @classmethod
    def _recorded_near_its_date(cls, recorded_at: dt.datetime,
                                info: ValidationInfo) -> dt.datetime:
        if recorded_at.year < EARLIEST_DATE.year:
            raise ValueError(f"must not be before {EARLIEST_DATE.isoformat()}")
        date = info.data.get("date")
        if isinstance(date, dt.date) and (
                recorded_at.date() + dt.timedelta(days=MAX_DAYS_RECORDED_AHEAD) < date):
            raise ValueError(f"more than {MAX_DAYS_RECORDED_AHEAD} days before the date "
                             "it marks")
        return recorded_at


class PupilRemoved(_Event):
    schema_: Literal["pupil.removed/v1"] = Field(alias="schema")
    ground: FreeText | None = None


Event = Annotated[RegisterMark | PupilRemoved, Field(discriminator="schema_")]
EVENT_ADAPTER: TypeAdapter[RegisterMark | PupilRemoved] = TypeAdapter(Event)

ROUTING_KEYS: dict[type[_Event], str] = {
    RegisterMark: "register.mark",
    PupilRemoved: "pupil.removed",
}


def routing_key(event: RegisterMark | PupilRemoved) -> str:
    return ROUTING_KEYS[type(event)]
