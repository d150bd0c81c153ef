"""The lists (below 90%, persistent and severe absence, penalty notices, unexplained marks),
a page at a time on screen and whole as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from staff.access import LIST_READERS, User
from staff.pages.common import LISTS, CurrentUser, render, staff_app

router = APIRouter()


async def _list_rows(request: Request, user: User, which: str, year_group: int | None,
                     school: str | None) -> dict[str, Any]:
    if not user.may(LIST_READERS):
        raise HTTPException(404, "Not found")
    if which not in LISTS:
        which = "below_90"
    schools: Sequence[str] | None
    if school:
        if not user.serves(school):
            raise HTTPException(404, "Not found")
        schools = [school]
    else:
        schools = None if user.schools is None else sorted(user.schools)
    result = await staff_app(request).backend.attendance(schools, which, year_group)
    return {"rows": result["rows"], "truncated": result.get("truncated", False),
            "which": which, "year_group": year_group, "school": school}


YearGroup = Annotated[int | None, Query(ge=-2, le=14)]
SchoolFilter = Annotated[str | None, Query(pattern=r"^[0-9]{6,8}$")]


# Rows per page on screen; the CSV carries the whole list.
PAGE_SIZE = 100


@router.get("/lists", response_class=HTMLResponse)
async def lists_page(request: Request, user: CurrentUser, list: str = "below_90",
                     year_group: YearGroup = None, school: SchoolFilter = None,
                     page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> HTMLResponse:
    context = await _list_rows(request, user, list, year_group, school)
    total = len(context["rows"])
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    first = (page - 1) * PAGE_SIZE
    context["rows"] = context["rows"][first:first + PAGE_SIZE]
    return render(request, "lists.html", user, lists=LISTS, total=total, page=page,
                  pages=pages, first=first, **context)


CSV_COLUMNS = ("school_urn", "pupil_id", "family_name", "given_name", "year_group",
               "attendance_percent", "absence_percent", "possible", "authorised",
               "unauthorised", "unexplained_over_5_days")


@router.get("/lists.csv")
async def lists_csv(request: Request, user: CurrentUser, list: str = "below_90",
                    year_group: YearGroup = None, school: SchoolFilter = None) -> Response:
    context = await _list_rows(request, user, list, year_group, school)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in context["rows"]:
        # A name starting with = + - @ is written as text, never as a spreadsheet formula.
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    staff = staff_app(request)
    # An export is a view of every child on it: each school's lead sees who took one.
    by_school: dict[str, int] = {}
    for row in context["rows"]:
        by_school[row["school_urn"]] = by_school.get(row["school_urn"], 0) + 1
    for urn, count in sorted(by_school.items()):
        await staff.views.record(user, "exported", urn, "", staff.clock.now(),
                                 f"{LISTS[context['which']]}: {count} pupils")
    name = f"{context['which']}-{staff.clock.now():%Y-%m-%d}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
