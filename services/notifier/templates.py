"""Message templates (Jinja2): one per rule x channel x language under `templates/`.

`StrictUndefined` turns a missing variable into an error in a test rather than a blank in a
parent's text; HTML email templates are autoescaped, so a name can never inject markup.
Family messages get only what docs/rules.md "Contacting people" allows: first name, date, school name and phone.
A message that goes out later than the day it is about names the day, never "today": the
context says whether it goes out on that day (`same_day`, from its due time in the school's
time zone). Professionals' pupils carry `staff_link`, the pupil's page in the staff app (None
when NOTIFIER_STAFF_URL is not set); a family message never links there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from broker_messages.contact import Channel, ContactRequest, Recipient
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None


def _long_date(day: dt.date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def _day_and_date(day: dt.date) -> str:
    """'Monday 16 November': how a message names a day that is not today."""
    return f"{day:%A} {day.day} {day:%B}"


_WELSH_DAYS = ("Llun", "Mawrth", "Mercher", "Iau", "Gwener", "Sadwrn", "Sul")
_WELSH_MONTHS = ("Ionawr", "Chwefror", "Mawrth", "Ebrill", "Mai", "Mehefin", "Gorffennaf",
                 "Awst", "Medi", "Hydref", "Tachwedd", "Rhagfyr")


def _welsh_day_and_date(day: dt.date) -> str:
    """'Llun 16 Tachwedd': templates put it after 'ddydd' ('on Monday 16 November')."""
    return f"{_WELSH_DAYS[day.weekday()]} {day.day} {_WELSH_MONTHS[day.month - 1]}"


def _names(pupils: list[dict[str, str]]) -> str:
    names = [p["given_name"] for p in pupils]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class TemplateLibrary:
    def __init__(self, directory: Path, staff_url: str | None = None) -> None:
        """`staff_url`: the staff app's base URL, for links to a pupil in professional messages."""
        if not directory.is_dir():
            raise FileNotFoundError(f"templates directory {directory} does not exist")
        self._env = Environment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._env.filters["long_date"] = _long_date
        self._env.filters["names"] = _names
        self._env.filters["day_and_date"] = _day_and_date
        self._env.filters["welsh_day_and_date"] = _welsh_day_and_date
        self._staff_url = staff_url.rstrip("/") if staff_url else None

    def _template(self, rule: str, channel: str, part: str, language: str) -> Any:
        for lang in dict.fromkeys([language, FALLBACK_LANGUAGE]):
            try:
                return self._env.get_template(f"{rule}/{channel}.{lang}.{part}.j2")
            except TemplateNotFound:
                continue
        raise TemplateNotFound(f"{rule}/{channel}.{language}.{part}.j2")

    def render(
        self, rule: str, channel: Channel, language: str, context: dict[str, Any]
    ) -> Rendered:
        def part(name: str) -> str:
            return str(self._template(rule, channel, name, language).render(context)).strip()

        if channel == "email":
            return Rendered(body=part("txt"), subject=part("subject"), html=part("html"))
        return Rendered(body=part("txt"))

    def render_request(
        self, request: ContactRequest, recipient: Recipient, channel: Channel,
        due: dt.datetime | None = None,
    ) -> Rendered:
        """`due`: when the message is to go out (None: on the request's own day)."""
        return self.render(request.rule, channel, recipient.language,
                           context_for(request, recipient, due, self._staff_url))


def goes_out_on_the_day(request: ContactRequest, due: dt.datetime | None) -> bool:
    """Whether a message due then goes out on the school day it is about (school-local)."""
    if due is None:
        return True
    return due.astimezone(ZoneInfo(request.delivery.timezone)).date() == request.date


def staff_link(staff_url: str, request: ContactRequest, pupil_id: str) -> str:
    """The pupil's page in the staff app, opened at the day the message is about."""
    return (f"{staff_url}/pupils/{quote(request.school.urn, safe='')}/"
            f"{quote(pupil_id, safe='')}?date={request.date.isoformat()}")


def context_for(request: ContactRequest, recipient: Recipient,
                due: dt.datetime | None = None, staff_url: str | None = None) -> dict[str, Any]:
    """Only what a message may carry. Family recipients never see surnames of other children,
    codes, reasons or comments, nor a staff link: those are not even in the context."""
    professional = recipient.role != "parent"
    pupils = [
        {"given_name": p.given_name, **({
            "full_name": f"{p.given_name} {p.family_name}", "pupil_id": p.pupil_id,
            "staff_link": staff_link(staff_url, request, p.pupil_id) if staff_url else None,
        } if professional else {})}
        for p in request.pupils
    ]
    return {
        "rule": request.rule,
        "school": {"name": request.school.name, "phone": request.school.phone or ""},
        "date": request.date,
        "same_day": goes_out_on_the_day(request, due),
        "episode_start": request.episode_start,
        "pupils": pupils,
        "recipient": {"name": recipient.name, "role": recipient.role},
        "details": dict(request.details),
    }
