"""docs/contract.md §2 "HTTP ingest" and §3 "Parked events": the answer to `POST /api/v1/events`
says, item by item, what the consumer will do (apply, park, or refuse with the reason), and a
school office can list the events still waiting for its roster."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import select
from triage.models import marks, parked_events, received_events

from tests.factories import LONDON, MONDAY, URN, mark, pupil, removal, school
from tests.stack import Stack

OTHER_URN = "654321"


def _discard_on(parked_at: dt.datetime, days: int) -> str:
    return (parked_at + dt.timedelta(days=days)).astimezone(LONDON).date().isoformat()


async def _column(stack: Stack, column: Any) -> list[Any]:
    async with stack.triage.engine.connect() as conn:
        return sorted((await conn.execute(select(column))).scalars().all())


async def test_each_item_is_answered_as_the_consumer_will_treat_it(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    applied = mark("P1", "N")
    # Long ago but in term: the consumer applies it (docs/rules.md "Stale marks": records and
    # rates, no contact), so it is accepted.
    old = mark("P1", "/", day=dt.date(2026, 9, 7))
    newcomer = mark("P9", "N")
    newcomer_leaves = removal("P9")
    refused = [
        mark("P1", "N", day=dt.date(2026, 11, 21)),  # a Saturday
        mark("P1", "N", day=dt.date(2026, 11, 20)),  # a closure day
        mark("P1", "N", day=MONDAY + dt.timedelta(days=1)),  # tomorrow
        mark("P1", "N", day=dt.date(2025, 11, 24)),  # before the uploaded terms
        mark("P1", "N", urn="999999"),  # a school never uploaded
    ]
    response = await stack.post_events([applied, old, newcomer, newcomer_leaves, *refused])

    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["accepted"] == [applied["event_id"], old["event_id"]]
    discard_on = _discard_on(stack.clock.now(), stack.triage_settings.parked_event_days)
    assert answer["parked"] == [
        {"event_id": event["event_id"], "pupil_id": "P9", "discard_on": discard_on,
         "reason": "unknown pupil: not on the school's roster; applied when a roster upload "
                   "(PUT /api/v1/schools/{urn}) names the pupil, discarded on discard_on "
                   "otherwise"}
        for event in (newcomer, newcomer_leaves)]
    assert [(p["loc"], p["msg"]) for p in answer["detail"]] == [
        (["body", 4, "date"], "not a school day: Saturday 2026-11-21 is a weekend"),
        (["body", 5, "date"],
         "not a school day: 2026-11-20 is a closure day in the school's calendar"),
        (["body", 6, "date"], "date in the future: 2026-11-24"),
        (["body", 7, "date"], "not a school day: 2025-11-24 is outside the school's terms"),
        (["body", 8, "school_urn"], "unknown school_urn: 999999"),
    ]

    await stack.processed()
    # Accepted means applied; parked means parked; nothing refused was published.
    assert await _column(stack, marks.c.event_id) == sorted(answer["accepted"])
    assert await _column(stack, parked_events.c.event_id) == sorted(
        item["event_id"] for item in answer["parked"])
    assert await _column(stack, received_events.c.event_id) == sorted(
        [*answer["accepted"], *(item["event_id"] for item in answer["parked"])])


async def test_parked_events_are_listed_until_the_roster_names_the_pupil(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    parked_at = stack.clock.now()
    first, second = mark("P9", "N"), mark("P9", "L", session="PM")
    leaves = removal("P8")
    # The broker path parks just as before; HTTP ingest says so.
    await stack.publish(first)
    response = await stack.post_events([second, leaves])
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == []
    await stack.processed()
    # A repeat of a parked event is still reported parked, not accepted.
    repeat = await stack.post_events(first)
    assert [item["event_id"] for item in repeat.json()["parked"]] == [first["event_id"]]
    await stack.processed()

    listed = await stack.triage_api.get(f"/api/v1/schools/{URN}/parked")
    assert listed.status_code == 200, listed.text
    discard_on = _discard_on(parked_at, stack.triage_settings.parked_event_days)
    expected = [
        {"event_id": first["event_id"], "schema": "register.mark/v1", "pupil_id": "P9",
         "date": MONDAY.isoformat(), "session": "AM", "discard_on": discard_on},
        {"event_id": second["event_id"], "schema": "register.mark/v1", "pupil_id": "P9",
         "date": MONDAY.isoformat(), "session": "PM", "discard_on": discard_on},
        {"event_id": leaves["event_id"], "schema": "pupil.removed/v1", "pupil_id": "P8",
         "date": MONDAY.isoformat(), "session": None, "discard_on": discard_on},
    ]
    rows = listed.json()
    assert [dt.datetime.fromisoformat(row.pop("parked_at")) for row in rows] == [parked_at] * 3
    assert sorted(rows, key=lambda row: row["event_id"]) == sorted(
        expected, key=lambda row: row["event_id"])
    assert "N" not in {value for row in rows for value in row.values()}, "no register codes"

    assert (await stack.put_school(school([pupil("P1"), pupil("P9", "Nia")]))).json()[
        "unparked"] == 2
    remaining = (await stack.triage_api.get(f"/api/v1/schools/{URN}/parked")).json()
    assert [row["pupil_id"] for row in remaining] == ["P8"]


async def test_the_parked_list_is_scoped_and_per_school(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.post_events([mark("P9", "N")])
    await stack.processed()
    api = stack.triage_api

    async def key(scopes: list[str], schools: list[str]) -> dict[str, str]:
        made = await api.post("/api/v1/keys", json={"name": "office", "scopes": scopes,
                                                     "schools": schools})
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['key']}"}

    def get(urn: str, headers: dict[str, str]) -> Any:
        return api.get(f"/api/v1/schools/{urn}/parked", headers=headers)

    reader = await key(["timeline:read"], [URN])
    own: httpx.Response = await get(URN, reader)
    assert own.status_code == 200 and [row["pupil_id"] for row in own.json()] == ["P9"]
    assert (await get(URN, await key(["marks:write", "tasks:read"], [URN]))).status_code == 403
    other_school = await get(URN, await key(["timeline:read"], [OTHER_URN]))
    assert other_school.status_code == 403 and "P9" not in other_school.text
    assert (await get(OTHER_URN, {})).status_code == 404, "administrator: no such school"
    assert (await api.get("/api/v1/schools/12/parked")).status_code == 422
