"""Message templates (Jinja2): one per rule x channel x language under `templates/`.

`StrictUndefined` turns a missing variable into an error in a test rather than a blank in a
parent's text; HTML email templates are autoescaped, so a name can never inject markup.
Family messages get only what docs/rules.md "Contacting people" allows: first name, date, school name and phone.
Dates and numbers are written for the template's language by Babel (CLDR's `en_GB` and `cy`),
phone numbers in the national format people dial (phonenumbers); voice scripts read them digit
by digit (`spoken_digits`).
An email whose rule has no HTML template of its own in that language (the professional
messages) gets its text in HTML paragraphs (`text_to_html`): one wording per language, so the
two parts cannot drift apart.
A message that goes out later than the day it is about names the day, never "today": the
context says whether it goes out on that day (`same_day`, from its due time in the school's
time zone). Professionals' pupils carry `staff_link`, the pupil's page in the staff app (None
when NOTIFIER_STAFF_URL is not set); a family message never links there.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import phonenumbers
from babel.dates import format_date
from babel.lists import format_list
from babel.numbers import format_decimal
from broker_messages.contact import Channel, ContactRequest, Recipient, RecipientRole
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

FALLBACK_LANGUAGE = "en"
# Whom each rule's templates are written for (docs/rules.md "The rules", the recipients of
# triage's planners), the first being the one a preview shows unless asked for another. A
# family template names a child by first name only; a professional one needs the full name and
# the pupil id, which a family's context does not carry.
AUDIENCES: dict[str, tuple[RecipientRole, ...]] = {
    "first_day_contact": ("parent",),
    "attendance_update": ("parent",),
    "attendance_stage1": ("parent", "attendance_officer"),
    "persistent_absence": ("parent", "attendance_officer", "local_authority"),
    "day3_home_visit": ("attendance_officer", "dsl"),
    "social_worker_unexplained": ("social_worker",),
    "looked_after_unexplained": ("virtual_school",),
    "family_unreachable": ("attendance_officer", "social_worker"),
    "family_opted_out": ("attendance_officer",),
    "unexplained_not_recoded": ("attendance_officer",),
    "parked_marks_expiring": ("attendance_officer",),
    "penalty_notice_threshold": ("attendance_officer", "headteacher"),
    "severe_absence": ("attendance_officer", "dsl", "local_authority", "social_worker"),
    "continuous_absence_10_days": ("local_authority",),
    "ehcp_absence_15_days": ("local_authority",),
    "la_referral": ("local_authority",),
    "register_removal": ("local_authority", "social_worker"),
}


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None


# Babel locale (CLDR data) per template language. A language with no templates of its own is
# written in English (FALLBACK_LANGUAGE), and so are its dates.
LOCALES = {"en": "en_GB", "cy": "cy"}
# Phone numbers are British unless written with another country's code.
_REGION = "GB"
_WELSH_VOWELS = frozenset("aeiouwyâêîôûŵŷáéíóúẃýàèìòùẁỳäëïöüẅÿ")
# How a professional message names the family rule a family could not be reached about
# (`family_unreachable`); other languages and rules fall back to the id in words.
RULE_TITLES: dict[str, dict[str, str]] = {
    "cy": {"first_day_contact": "cyswllt diwrnod cyntaf",
           "attendance_stage1": "cam 1 presenoldeb",
           "persistent_absence": "absenoldeb parhaus",
           "attendance_update": "diweddariad presenoldeb"},
}
_LINK = re.compile(r"https?://\S+")


def _locale(context: Context) -> str:
    return LOCALES.get(str(context.get("language", FALLBACK_LANGUAGE)), LOCALES["en"])


@pass_context
def _long_date(context: Context, day: dt.date) -> str:
    """'Monday 30 November 2026', 'Dydd Llun 30 Tachwedd 2026'."""
    return format_date(day, "EEEE d MMMM y", locale=_locale(context))


@pass_context
def _day_and_date(context: Context, day: dt.date) -> str:
    """'Monday 16 November': how a message names a day that is not today."""
    return format_date(day, "EEEE d MMMM", locale=_locale(context))


@pass_context
def _on_day(context: Context, day: dt.date) -> str:
    """'on Monday 16 November'. Welsh says it with the day name alone, soft-mutated: 'ddydd
    Llun 16 Tachwedd' (CLDR has the name, 'Dydd Llun', not the adverbial form)."""
    named = _day_and_date(context, day)
    if _locale(context) == LOCALES["cy"]:
        return "d" + named[0].lower() + named[1:]
    return f"on {named}"


def _date_of(value: str | dt.date) -> dt.date:
    """A date carried in `details` as ISO text, for the date filters."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


@pass_context
def _rule_title(context: Context, rule: str) -> str:
    """'first day contact', 'cyswllt diwrnod cyntaf'."""
    language = str(context.get("language", FALLBACK_LANGUAGE))
    return RULE_TITLES.get(language, {}).get(rule, rule.replace("_", " "))


def text_to_html(text: str) -> Markup:
    """A plain-text email as HTML: escaped, a paragraph per blank-line block, lines kept,
    links made clickable. Whatever it is given is taken as plain text (Markup included: a
    template that captured a text part gets it escaped here, not trusted)."""
    text = str(text)

    def line(raw: str) -> str:
        escaped, last = [], 0
        for found in _LINK.finditer(raw):
            escaped += [escape(raw[last:found.start()]),
                        Markup('<a href="{0}">{0}</a>').format(found.group())]
            last = found.end()
        return "".join([*escaped, escape(raw[last:])])

    paragraphs = [block for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(Markup(line(raw))
                                                         for raw in block.splitlines()))
        for block in paragraphs)


@pass_context
def _number(context: Context, value: float) -> str:
    return format_decimal(value, locale=_locale(context))


@functools.lru_cache(maxsize=4096)
def national_phone(number: str) -> str:
    """'+441632960000' -> '01632 960000': how British readers write and dial it. A number
    from abroad keeps its international form; one that cannot be parsed is shown as given.
    Kept per number: every message names its school's, and parsing it took 3% of the
    notifier's time against the instant stub."""
    try:
        parsed = phonenumbers.parse(number, _REGION)
    except phonenumbers.NumberParseException:
        return number
    # By country code, not validity: Ofcom's drama numbers (01632 960xxx) are British too.
    if parsed.country_code == phonenumbers.country_code_for_region(_REGION):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _spoken_digits(phone: str) -> str:
    """'01632 960000' -> '0 1 6 3 2, 9 6 0 0 0 0': a voice reads each digit, pausing between
    groups, instead of 'nine hundred and sixty thousand'."""
    groups = [" ".join(c for c in group if c.isdigit() or c == "+") for group in phone.split()]
    return ", ".join(group for group in groups if group)


@pass_context
def _names(context: Context, pupils: list[dict[str, str]]) -> str:
    """'Tom and Sally'; in Welsh 'Tom a Sally', 'Tom ac Eli': CLDR's Welsh list pattern is
    'a(c)', leaving the choice to the writer, so it is made here (ac before a vowel)."""
    names = [p["given_name"] for p in pupils]
    if len(names) == 1:
        return names[0]
    if _locale(context) != LOCALES["cy"]:
        return format_list(names, locale=_locale(context))
    conjunction = "ac" if names[-1][:1].lower() in _WELSH_VOWELS else "a"
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


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
        self._env.filters["on_day"] = _on_day
        self._env.filters["number"] = _number
        self._env.filters["spoken_digits"] = _spoken_digits
        self._env.filters["date_of"] = _date_of
        self._env.filters["rule_title"] = _rule_title
        self._env.filters["text_to_html"] = text_to_html
        self._staff_url = staff_url.rstrip("/") if staff_url else None

    def _template(self, rule: str, channel: str, part: str, language: str) -> tuple[str, Any]:
        """The template and the language it is written in (English when there is none in
        `language`)."""
        for lang in dict.fromkeys([language, FALLBACK_LANGUAGE]):
            try:
                return lang, self._env.get_template(f"{rule}/{channel}.{lang}.{part}.j2")
            except TemplateNotFound:
                continue
        raise TemplateNotFound(f"{rule}/{channel}.{language}.{part}.j2")

    def render(
        self, rule: str, channel: Channel, language: str, context: dict[str, Any]
    ) -> Rendered:
        def part(name: str) -> tuple[str, str]:
            written_in, template = self._template(rule, channel, name, language)
            return written_in, str(template.render({**context, "language": written_in})).strip()

        written_in, body = part("txt")
        if channel != "email":
            return Rendered(body=body)
        try:  # in the text's own language only: never English markup around Welsh text
            html = str(self._env.get_template(f"{rule}/email.{written_in}.html.j2").render(
                {**context, "language": written_in})).strip()
        except TemplateNotFound:
            html = text_to_html(body)
        return Rendered(body=body, subject=part("subject")[1], html=html)

    def context(self, request: ContactRequest, recipient: Recipient,
                due: dt.datetime | None = None) -> dict[str, Any]:
        """`context_for` with this library's staff app link."""
        return context_for(request, recipient, due, self._staff_url)

    def render_request(
        self, request: ContactRequest, recipient: Recipient, channel: Channel,
        due: dt.datetime | None = None,
    ) -> Rendered:
        """`due`: when the message is to go out (None: on the request's own day)."""
        return self.render(request.rule, channel, recipient.language,
                           self.context(request, recipient, due))


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
        "school": {"name": request.school.name,
                   "phone": national_phone(request.school.phone) if request.school.phone else ""},
        "date": request.date,
        "same_day": goes_out_on_the_day(request, due),
        "episode_start": request.episode_start,
        "pupils": pupils,
        "recipient": {"name": recipient.name, "role": recipient.role},
        "details": dict(request.details),
    }
