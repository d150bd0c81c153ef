"""Per-school policy (docs/rules.md "Policy settings"). Every threshold is a setting with the documented default;
unknown keys and out-of-range values are rejected on upload."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from broker_messages.codes import Category, category
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirstDayContactPolicy(_Strict):
    not_before: dt.time = dt.time(9, 30)
    grace_minutes: Annotated[int, Field(ge=0, le=240)] = 0
    channels: tuple[Literal["sms", "email"], ...] = ("sms", "email")
    voice: bool = False


class Day3HomeVisitPolicy(_Strict):
    day: Annotated[int, Field(ge=2, le=10)] = 3


class PenaltyNoticePolicy(_Strict):
    sessions: Annotated[int, Field(ge=1, le=100)] = 10
    weeks: Annotated[int, Field(ge=1, le=39)] = 10
    codes: tuple[str, ...] = ("G", "N", "O", "U")

    @field_validator("codes")
    @classmethod
    def _unauthorised_codes(cls, codes: tuple[str, ...]) -> tuple[str, ...]:
        for code in codes:
            try:
                unauthorised = category(code) is Category.UNAUTHORISED
            except ValueError:
                raise ValueError(f"unknown register code {code!r}") from None
            if not unauthorised:
                raise ValueError(f"{code!r} is not an unauthorised-absence code")
        return codes


class AttendanceUpdatePolicy(_Strict):
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday"] = "friday"
    time: dt.time = dt.time(16, 0)
    opt_in: bool = True


class PersistentAbsencePolicy(_Strict):
    # "All PA cases are also automatically made known to the County Attendance team".
    inform_la: bool = True


_QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


class Policy(_Strict):
    first_day_contact: FirstDayContactPolicy = FirstDayContactPolicy()
    day3_home_visit: Day3HomeVisitPolicy = Day3HomeVisitPolicy()
    stage1_below: Rate = 0.92
    referral_below: Rate = 0.90
    persistent_at: Rate = 0.10
    severe_at: Rate = 0.50
    hysteresis: Annotated[float, Field(ge=0.0, le=0.2)] = 0.01
    min_possible_sessions: Annotated[int, Field(ge=0, le=400)] = 20
    penalty_notice: PenaltyNoticePolicy = PenaltyNoticePolicy()
    continuous_absence_days: Annotated[int, Field(ge=1, le=60)] = 10
    ehcp_absence_days: Annotated[int, Field(ge=1, le=190)] = 15
    quiet_hours: str = "20:00-08:00"
    max_action_age_days: Annotated[int, Field(ge=0, le=30)] = 1
    attendance_update: AttendanceUpdatePolicy = AttendanceUpdatePolicy()
    persistent_absence: PersistentAbsencePolicy = PersistentAbsencePolicy()
    # The 2024 regulations: an N must be replaced with the right code within 5 school days.
    recode_within_days: Annotated[int, Field(ge=1, le=30)] = 5

    @model_validator(mode="after")
    def _lines_in_order(self) -> Policy:
        # Stage 1 comes before the referral, persistent before severe (the example school policy).
        if self.referral_below > self.stage1_below:
            raise ValueError("referral_below must not be above stage1_below")
        if self.persistent_at >= self.severe_at:
            raise ValueError("persistent_at must be below severe_at")
        return self

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours_format(cls, value: str) -> str:
        if not _QUIET_HOURS.match(value):
            raise ValueError("quiet_hours must look like 'HH:MM-HH:MM'")
        return value
