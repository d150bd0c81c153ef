"""docs/rules.md "Opt-out": a number that replied STOP (or that Twilio refuses with 21610) is not
texted again by that school until it replies START. Calls and email are not affected: they are
the fallbacks the rules name."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from servicekit.database import dialect_insert
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.models import opt_outs

# Twilio's standard opt-out and opt-in keywords (Messaging "Advanced Opt-Out" defaults).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                           "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})
# Twilio also takes YES as an opt-in; from a parent who has not opted out it is a reply.
CONDITIONAL_OPT_IN = "YES"
# Where the school is not known (a STOP from a number no request names): every school.
ANY_SCHOOL = "*"
UNSUBSCRIBED_CODE = "21610"

Keyword = Literal["opt_out", "opt_in"]


def keyword(body: str) -> Keyword | None:
    """Twilio matches the whole message, trimmed and case-insensitively."""
    word = body.strip().strip(".!").upper()
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS or word == CONDITIONAL_OPT_IN:
        return "opt_in"
    return None


async def opt_out(conn: AsyncConnection, school_urn: str, phone: str, source: str,
                  now: dt.datetime) -> bool:
    """Whether the number is newly opted out (a second STOP changes nothing)."""
    stored = await conn.execute(
        dialect_insert(conn.engine)(opt_outs)
        .values(school_urn=school_urn, phone=phone, source=source, created_at=now)
        .on_conflict_do_nothing()
    )
    return bool(stored.rowcount)


async def opt_in(conn: AsyncConnection, school_urns: list[str], phone: str) -> None:
    await conn.execute(
        delete(opt_outs).where(opt_outs.c.phone == phone,
                               opt_outs.c.school_urn.in_([*school_urns, ANY_SCHOOL]))
    )


async def opted_out_among(conn: AsyncConnection, wanted: set[tuple[str, str]]
                          ) -> set[tuple[str, str]]:
    """Which of these (school, phone) pairs may not be texted: one query for a whole batch."""
    if not wanted:
        return set()
    rows = await conn.execute(
        select(opt_outs.c.school_urn, opt_outs.c.phone)
        .where(opt_outs.c.phone.in_(sorted({phone for _, phone in wanted})))
    )
    stopped = {(urn, phone) for urn, phone in rows}
    return {(urn, phone) for urn, phone in wanted
            if (urn, phone) in stopped or (ANY_SCHOOL, phone) in stopped}


async def is_opted_out(conn: AsyncConnection, school_urn: str, phone: str) -> bool:
    found = await conn.execute(
        select(opt_outs.c.phone).where(opt_outs.c.phone == phone,
                                       opt_outs.c.school_urn.in_([school_urn, ANY_SCHOOL]))
    )
    return found.first() is not None
