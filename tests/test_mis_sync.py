"""The MIS sync through Wonde (docs/contract.md §1 "MIS sync"), against the loopback Wonde stub,
the real broker and the real triage (tests/stack.py): rosters and register marks arrive, a
re-code wins as an amendment, paging is followed, a refused school stops while the others
continue, and a rate limit is waited out for as long as Wonde asks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mis_sync import mapping, store
from mis_sync.app import running
from mis_sync.settings import MisSyncSettings, SchoolLink, WondeSettings, parse_schools
from mis_sync.wonde import retry_after_seconds
from pydantic import SecretStr
from sqlalchemy import select
from triage.models import received_events

from tests.factories import LONDON, MONDAY, school
from tests.fakes.wonde_stub import TOKEN, WondeStub, contact
from tests.stack import API_TOKEN, Stack

ASHGROVE = SchoolLink("A1930499544", "123456")
REVOKED = SchoolLink("B2000000001", "654321")


def at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(MONDAY, dt.time(hour, minute), tzinfo=LONDON)


@pytest.fixture
async def wonde() -> AsyncIterator[WondeStub]:
    async with WondeStub(page_size=2) as stub:
        yield stub


def _ashgrove(stub: WondeStub) -> None:
    stub.add_student(ASHGROVE.wonde_id, "S1", "Sally", "Smith", [
        contact("C1", "Tom", "Smith", priority=1, relationship="Father", court_order=True,
                mobile="07700 900002", email="tom@example.com"),
        contact("C2", "Jane", "Smith", priority=2, mobile="07700 900001",
                email="jane@example.com", language="cy"),
        contact("C3", "Ada", "Jones", priority=1, relationship="Grandmother",
                parental_responsibility=False, mobile="not a number", email="not an address"),
    ])
    stub.add_student(ASHGROVE.wonde_id, "S2", "Noor", "Khan",
                     [contact("C4", "Rhian", "Khan", mobile="+44 7700 900004")])
    stub.add_student(ASHGROVE.wonde_id, "S3", "Ada", "Brown",
                     [contact("C5", "Jane", "Brown", mobile="07700900005")])
    stub.mark(ASHGROVE.wonde_id, "R1", "S1", "N", day=MONDAY, session="AM",
              updated_at=at(8, 50))
    stub.mark(ASHGROVE.wonde_id, "R2", "S2", "L", day=MONDAY, session="AM",
              updated_at=at(8, 55), minutes_late=12)
    stub.mark(ASHGROVE.wonde_id, "R3", "S3", "C1", day=MONDAY, session="AM",
              updated_at=at(8, 56))
    stub.mark(ASHGROVE.wonde_id, "R4", "S3", "EX", day=MONDAY, session="PM",
              updated_at=at(8, 57))
    stub.mark(ASHGROVE.wonde_id, "R5", "S2", "-", day=MONDAY, session="PM",
              updated_at=at(8, 58))
    stub.add_student(REVOKED.wonde_id, "T1", "Child1", "Doe", [contact("C9", "Doe", "Doe")])
    stub.revoke(REVOKED.wonde_id, 401)


def _settings(stub: WondeStub, stack: Stack, triage_url: str, database_url: str,
              schools_dir: Path) -> MisSyncSettings:
    return MisSyncSettings(
        amqp_url=stack.triage_settings.amqp_url, database_url=database_url,
        schools_dir=schools_dir, triage_url=triage_url, triage_key=SecretStr(API_TOKEN),
        wonde=WondeSettings(api_base=stub.base_url, token=SecretStr(TOKEN),
                            schools=f"{ASHGROVE.wonde_id}:{ASHGROVE.urn},"
                                    f"{REVOKED.wonde_id}:{REVOKED.urn}"))


async def _timeline(stack: Stack, pupil_id: str) -> dict[str, Any]:
    response = await stack.triage_api.get(f"/api/v1/pupils/{pupil_id}/timeline",
                                          params={"school_urn": ASHGROVE.urn})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _codes(timeline: dict[str, Any]) -> dict[str, str]:
    return {mark["session"]: mark["code"] for mark in timeline["marks"]}


async def test_a_school_synced_through_wonde(stack: Stack, wonde: WondeStub, tmp_path: Path,
                                             database_url: str) -> None:
    stack.at(10)
    schools_dir = tmp_path / "schools"
    schools_dir.mkdir()
    document = {k: v for k, v in school([]).items() if k != "pupils"}
    (schools_dir / f"{ASHGROVE.urn}.json").write_text(json.dumps(document))
    _ashgrove(wonde)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with stack.served() as (triage_url, _):
        settings = _settings(wonde, stack, triage_url, database_url, schools_dir)
        async with running(settings, stack.clock, sleep=sleep) as syncer:
            first = await syncer.sync_all(settings.wonde.links())
            assert stack.triage.consumer is not None
            await stack.triage.consumer.wait_settled(4)

            # The roster: pupils from every page, contacts as the school document takes them.
            assert [(o.urn, o.state, o.roster, o.marks_published, o.marks_skipped)
                    for o in first] == [("123456", "synced", "uploaded", 4, 1),
                                        ("654321", "revoked", "unchanged", 0, 0)]
            sally = (await stack.triage_api.get("/api/v1/pupils/S1",
                                                params={"school_urn": ASHGROVE.urn})).json()
            assert [(c["name"], c["priority"], c["phone"], c["email"], c["no_contact"],
                     c["language"]) for c in sally["contacts"]] == [
                ("Tom Smith", 1, "+447700900002", "tom@example.com", True, "en"),
                ("Jane Smith", 2, "+447700900001", "jane@example.com", False, "cy"),
                ("Ada Jones", 3, None, None, False, "en")]
            assert (await stack.triage_api.get(
                "/api/v1/pupils/S3", params={"school_urn": ASHGROVE.urn})).status_code == 200

            # The marks: N, L with its minutes, a two-character code, the school's own code
            # through its meaning; "no mark yet" is not a mark.
            assert _codes(await _timeline(stack, "S1")) == {"AM": "N"}
            assert _codes(await _timeline(stack, "S2")) == {"AM": "L"}
            assert _codes(await _timeline(stack, "S3")) == {"AM": "C1", "PM": "C"}
            async with stack.triage.engine.connect() as conn:
                payloads = [row.payload for row in await conn.execute(
                    select(received_events.c.payload))]
            late = next(p for p in payloads if p["pupil_id"] == "S2")
            assert (late["minutes_late"], late["source"]) == (12, "wonde")
            assert any(q.get("page") == "2" for _, r, q in wonde.requests
                       if r == "attendance/session")
            assert any(q.get("page") == "2" for _, r, q in wonde.requests if r == "students")

            # The office explains Sally's absence; Wonde rate-limits the next pass twice.
            wonde.mark(ASHGROVE.wonde_id, "R1", "S1", "I", day=MONDAY, session="AM",
                       updated_at=at(9, 40))
            wonde.fail_next(2, 429, retry_after="7")
            stack.at(10, 5)
            asked = len(wonde.requests)
            second = await syncer.sync_all(settings.wonde.links())
            assert sleeps == [7.0, 7.0]
            assert [(o.state, o.roster) for o in second] == [("synced", "unchanged"),
                                                            ("skipped_revoked", "unchanged")]
            await stack.triage.consumer.wait_settled(4 + second[0].marks_published)

        # The amendment wins; what was already sent came back as duplicates, adding nothing.
        sally_marks = await _timeline(stack, "S1")
        assert _codes(sally_marks) == {"AM": "I"}
        assert [(m["code"], m["current"], m["source"]) for m in sally_marks["mark_history"]] \
            == [("N", False, "wonde"), ("I", True, "wonde")]
        assert len((await _timeline(stack, "S2"))["mark_history"]) == 1
        # The refused school is reported and no longer asked.
        assert not any(school_id == REVOKED.wonde_id
                       for school_id, _, _ in wonde.requests[asked:])
    engine_statuses = await _statuses(database_url)
    assert [(s.urn, s.state, s.refused_status) for s in engine_statuses] == [
        ("123456", store.SchoolState.ACTIVE, None), ("654321", store.SchoolState.REVOKED, 401)]


async def _statuses(database_url: str) -> list[store.SchoolStatus]:
    from servicekit.database import make_engine
    engine = make_engine(database_url)
    try:
        return await store.all_statuses(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("code,meaning,sent", [
    ("N", "UNAUTHORISED_ABSENCE", "N"),
    ("C1", "AUTHORISED_ABSENCE", "C1"),
    ("Y1", "ATTENDANCE_NOT_REQUIRED", "Y1"),
    ("H", "AUTHORISED_ABSENCE", "H"),  # legacy: triage stores it as C
    ("EX", "AUTHORISED_ABSENCE", "C"),  # the school's own code: the "other" of its meaning
    ("I", "UNAUTHORISED_ABSENCE", "O"),  # counted otherwise by the school: the meaning wins
    ("ZZ", "ATTENDANCE_NOT_REQUIRED", None),
    ("-", "NO_MARK", None),
    ("N", None, None),
])
def test_codes_are_mapped_through_their_statistical_meaning(
        code: str, meaning: str | None, sent: str | None) -> None:
    assert mapping.register_code(code, meaning) == sent


def test_retry_after_is_seconds_or_an_http_date() -> None:
    now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Mon, 23 Nov 2026 09:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon", now) is None


def test_the_school_list_names_every_bad_entry() -> None:
    assert parse_schools("A1:123456, B2:654321") == (SchoolLink("A1", "123456"),
                                                     SchoolLink("B2", "654321"))
    with pytest.raises(ValueError, match="'A1=123456' is not.*URN 123456 is listed twice"):
        parse_schools("A1=123456,B2:123456,C3:123456")
