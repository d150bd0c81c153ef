"""docs/contract.md §3 "Loading a school from CSV": `python -m triage import-csv` reads the MIS
exports, reports every bad row by its line, sends nothing while any row is bad (unless told
to apply the good ones), and otherwise goes through triage's own API — the roster `PUT` and
`POST /api/v1/events` — so the marks are applied as every other source's are."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select
from triage import csv_import
from triage.models import marks, received_events

from tests.factories import contact, pupil, school
from tests.stack import API_TOKEN, Stack

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
ROSTER_HEADER = "UPN,Legal Forename,Legal Surname,Year,Contact 1 Name,Contact 1 Mobile\n"
MARKS_HEADER = "UPN,Date,Session,Mark\n"


async def _count(stack: Stack, table: object) -> int:
    async with stack.triage.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_the_example_files_import_through_the_command(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert (await stack.put_school(school([]))).status_code == 200
    async with stack.served() as (triage_url, _):
        code = await csv_import.command(
            ["--school", "123456", "--roster", str(EXAMPLES / "roster.csv"),
             "--marks", str(EXAMPLES / "marks.csv"), "--url", triage_url],
            API_TOKEN, stack.clock)
    output = capsys.readouterr().out
    assert code == 0, output
    assert "roster: 3 pupils, 3 joined, 0 left" in output and "marks: 12 sent" in output
    stack.published_elsewhere(12)
    await stack.processed()
    assert await _count(stack, marks) == 12

    stored = {p["id"]: p for p in (await stack.triage_api.get(
        "/api/v1/schools/123456")).json()["pupils"]}
    assert [stored[i]["year_group"] for i in sorted(stored)] == [3, 0, -1]
    sally = stored["A123456789012"]
    assert [(c["priority"], c["phone"]) for c in sally["contacts"]] == [
        (1, "+447700900001"), (2, "+441632960001")]
    assert sally["contacts"][0]["attendance_updates"] is True
    assert stored["A123456789013"]["looked_after"] is True


def _files(tmp_path: Path) -> tuple[Path, Path]:
    roster = tmp_path / "pupils.csv"
    roster.write_text(ROSTER_HEADER
                      + "P1,Sally,Smith,3,Jane Smith,07700 900001\n"  # line 2
                      + "P2,Tom,Jones,R,Mary Jones,0770 09\n"  # line 3: phone too short
                      + "P3,Ada,Patel,Q,Priya Patel,07700 900003\n")  # line 4: year group
    marks_file = tmp_path / "marks.csv"
    marks_file.write_text(MARKS_HEADER
                          + "P1,16/11/2026,AM,N\n"  # line 2
                          + "P1,31/02/2026,AM,N\n"  # line 3: no such date
                          + "P1,21/11/2026,AM,N\n"  # line 4: a Saturday
                          + "P9,16/11/2026,AM,N\n"  # line 5: not on the roster
                          + "P1,16/11/2026,AM,/\n"  # line 6: the same session again
                          + "P1,17/11/2026,XM,?\n"  # line 7: session and mark
                          + "P1,17/11/2026,PM,/\n")  # line 8
    return roster, marks_file


async def test_bad_rows_are_reported_by_line_and_nothing_is_applied(
        stack: Stack, tmp_path: Path) -> None:
    original = school([pupil("P2", "Tom", contacts=[contact(1)])])
    assert (await stack.put_school(original)).status_code == 200
    before = (await stack.triage_api.get("/api/v1/schools/123456")).json()
    roster, marks_file = _files(tmp_path)
    out = io.StringIO()
    outcome = await csv_import.import_files(stack.triage_api, "123456", roster, marks_file,
                                            stack.clock, out=out)
    assert not outcome.applied and outcome.exit_code == 1
    report = out.getvalue().splitlines()
    assert [(p.file, p.line) for p in outcome.problems] == [
        ("pupils.csv", 3), ("pupils.csv", 4), ("marks.csv", 3), ("marks.csv", 4),
        ("marks.csv", 5), ("marks.csv", 6), ("marks.csv", 7), ("marks.csv", 7)]
    assert report[0].startswith("pupils.csv line 3: pupil P2, Contact 1 Mobile: not a phone "
                                "number we can call or text")
    assert report[1].startswith("pupils.csv line 4: pupil P3, Year: not a year group")
    assert "marks.csv line 4: not a school day: Saturday 2026-11-21 is a weekend" in report
    assert ("marks.csv line 5: pupil P9 is not on the school's roster") in report
    assert "marks.csv line 6: pupil P1 2026-11-16 AM is also on line 2" in report
    assert report[-1].startswith("8 problem(s): nothing imported")
    assert (await stack.triage_api.get("/api/v1/schools/123456")).json() == before
    assert await _count(stack, received_events) == 0


async def test_apply_valid_rows_imports_the_rest(stack: Stack, tmp_path: Path) -> None:
    assert (await stack.put_school(school([pupil("P2", "Tom")]))).status_code == 200
    roster, marks_file = _files(tmp_path)
    out = io.StringIO()
    outcome = await csv_import.import_files(stack.triage_api, "123456", roster, marks_file,
                                            stack.clock, apply_valid_rows=True, out=out)
    assert outcome.applied and outcome.exit_code == 0 and outcome.marks_sent == 2
    # P2's row could not be read, so P2 keeps the record already stored rather than leaving.
    assert outcome.roster is not None and outcome.roster["left"] == 0
    assert [p["id"] for p in outcome.roster["joined"]] == ["P1"]
    assert "8 row(s) with problems were left out" in out.getvalue()
    stack.published_elsewhere(2)
    await stack.processed()
    async with stack.triage.engine.connect() as conn:
        stored = (await conn.execute(select(marks.c.pupil_id, marks.c.date, marks.c.session,
                                            marks.c.code).order_by(marks.c.date))).all()
    assert [(p, d.isoformat(), s, c) for p, d, s, c in stored] == [
        ("P1", "2026-11-16", "AM", "N"), ("P1", "2026-11-17", "PM", "/")]


async def test_an_unknown_school_is_refused_before_anything_is_read(
        stack: Stack, tmp_path: Path) -> None:
    roster, _ = _files(tmp_path)
    with pytest.raises(csv_import.ImportFailed, match="upload its document"):
        await csv_import.import_files(stack.triage_api, "123456", roster, None, stack.clock,
                                      out=io.StringIO())
