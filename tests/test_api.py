"""Contract §2 HTTP ingest, §3 roster upload and tasks, §6 operations, and the rule over all of
them: every `/api/v1` route needs `Authorization: Bearer $API_TOKEN`, or it answers 401 and
changes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from servicekit.requests import MAX_BODY_BYTES
from sqlalchemy import select
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.models import pupils, received_events, schools
from triage.settings import TriageSettings

from tests.factories import URN, contact, mark, pupil, school
from tests.stack import API_TOKEN, Stack

# Routes a walk of the apps must find, so the walk itself cannot silently come up empty.
KNOWN_ROUTES = {
    ("triage", "PUT", "/api/v1/schools/{urn}"),
    ("triage", "POST", "/api/v1/events"),
    ("triage", "GET", "/api/v1/tasks"),
    ("triage", "POST", "/api/v1/tasks/{task_id}/complete"),
    ("notifier", "GET", "/api/v1/notifications"),
}


def _api_routes(apps: dict[str, FastAPI]) -> list[tuple[str, str, str]]:
    """Every /api/v1 operation the apps publish, so a new route cannot be forgotten here."""
    return sorted(
        (name, method.upper(), path)
        for name, app in apps.items()
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    )


def _client(app: FastAPI, base_url: str, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url,
                             headers=headers)


def _sample_bodies() -> dict[tuple[str, str], Any]:
    """Requests that would change something if they got past authentication."""
    return {
        ("PUT", "/api/v1/schools/{urn}"): school([pupil("P1"), pupil("P2", "Tom")]),
        ("POST", "/api/v1/events"): [mark("P1", "N")],
        ("POST", "/api/v1/tasks/{task_id}/complete"): {"outcome": "visited"},
        ("POST", "/api/v1/tasks/{task_id}/assign"): {"assignee": "u1"},
        ("POST", "/api/v1/pupils/{pupil_id}/contact-made"): {"by": "u1"},
    }


async def _request(client: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
    url = re.sub(r"\{[^}]+\}", URN, path)
    query = {"school_urn": URN} if method == "GET" else None
    body = _sample_bodies().get((method, path), {}) if method != "GET" else None
    return await client.request(method, url, params=query, json=body)


async def _table(stack: Stack, table: Any) -> list[tuple[Any, ...]]:
    async with stack.triage.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(select(table))]


# --- authentication --------------------------------------------------------------------------


async def test_every_api_route_refuses_a_missing_or_wrong_token(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    before = {table.name: await _table(stack, table) for table in (schools, pupils)}
    apps = {"triage": triage_app(stack.triage), "notifier": notifier_app(stack.notifier)}
    routes = _api_routes(apps)
    assert KNOWN_ROUTES <= set(routes)

    for authorization in (None, "Bearer wrong-token", f"Basic {API_TOKEN}", "Bearer ",
                          f"Bearer {API_TOKEN}x"):
        headers = {"Authorization": authorization} if authorization else {}
        for name, method, path in routes:
            async with _client(apps[name], f"http://{name}.test", **headers) as client:
                response = await _request(client, method, path)
            assert response.status_code == 401, (authorization, method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"

    assert {table.name: await _table(stack, table) for table in (schools, pupils)} == before
    # Nothing was published either: the one authorised event is the only one triage sees.
    accepted = await stack.post_events([mark("P1", "N")])
    assert accepted.status_code == 202, accepted.text
    await stack.processed()
    assert [row[0] for row in await _table(stack, received_events)] == accepted.json()["accepted"]


@asynccontextmanager
async def _apps_without_token(workdir: Path, token: str | None) -> AsyncIterator[
        dict[str, FastAPI]]:
    """Both apps as configured from an environment where API_TOKEN is unset (or empty)."""
    secret = SecretStr(token) if token is not None else None
    triage = TriageService(TriageSettings(
        database_url=f"sqlite+aiosqlite:///{workdir}/triage.db", api_token=secret))
    notifier = NotifierService(NotifierSettings(
        database_url=f"sqlite+aiosqlite:///{workdir}/notifier.db", api_token=secret))
    try:
        yield {"triage": triage_app(triage), "notifier": notifier_app(notifier)}
    finally:
        await triage.engine.dispose()
        await notifier.engine.dispose()


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
async def test_without_an_api_token_configured_every_request_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.delenv("API_TOKEN", raising=False)
    async with _apps_without_token(tmp_path, token) as apps:
        routes = _api_routes(apps)
        assert KNOWN_ROUTES <= set(routes)
        for presented in (API_TOKEN, "", "None"):
            for name, method, path in routes:
                async with _client(apps[name], f"http://{name}.test",
                                   Authorization=f"Bearer {presented}") as client:
                    response = await _request(client, method, path)
                assert response.status_code == 401, (method, path, presented, response.text)
        assert not (tmp_path / "triage.db").exists(), "nothing reached the database"


# --- PUT /api/v1/schools/{urn} ---------------------------------------------------------------


async def test_school_upload_with_many_problems_lists_them_all_and_changes_nothing(
    stack: Stack,
) -> None:
    original = school([pupil("P1"), pupil("P2", "Tom")])
    assert (await stack.put_school(original)).status_code == 200
    stored = {table.name: await _table(stack, table) for table in (schools, pupils)}

    bad = school(
        [pupil("P1", contacts=[contact(1, phone="0770 09")]), pupil("P1"), pupil("P3")],
        urn="654321", closures=["2026-02-30"],
        policy={"first_day_contact": {"not_after": "10:00"}, "stage1_below": 1.5},
    )
    bad["name"] = "Renamed School"
    response = await stack.triage_api.put(f"/api/v1/schools/{URN}", json=bad)

    assert response.status_code == 422
    problems = {tuple(problem["loc"]): problem["msg"] for problem in response.json()["detail"]}
    expected = {
        ("body", "pupils", 0, "contacts", 0, "phone"),  # not a phone number
        ("body", "policy", "first_day_contact", "not_after"),  # unknown policy key
        ("body", "policy", "stage1_below"),  # out of range
        ("body", "pupils", 1, "id"),  # duplicate pupil id
        ("body", "calendar", "closures", 0),  # 30 February
        ("path", "urn"),  # the document is for another school
    }
    assert set(problems) == expected, problems
    assert "duplicate" in problems[("body", "pupils", 1, "id")]

    assert {table.name: await _table(stack, table) for table in (schools, pupils)} == stored
    again = await stack.put_school(original)
    assert again.json() == {"urn": URN, "pupils": 2, "added": 0, "left": 0, "unparked": 0,
                            "joined": [], "leavers": [], "no_usable_contact": []}
    # Where each problem is, in words, before what is wrong with it.
    assert problems[("body", "pupils", 0, "contacts", 0, "phone")].startswith(
        "pupil P1: contact 1 phone: not a phone number we can call or text")


async def test_school_document_for_another_urn_is_refused(stack: Stack) -> None:
    response = await stack.triage_api.put("/api/v1/schools/654321", json=school([pupil("P1")]))
    assert response.status_code == 422
    assert [problem["loc"] for problem in response.json()["detail"]] == [["path", "urn"]]
    assert await _table(stack, schools) == []


async def _oversized() -> AsyncIterator[bytes]:
    chunk = b" " * (1024 * 1024)
    for _ in range(MAX_BODY_BYTES // len(chunk) + 1):
        yield chunk


async def test_body_over_8_mb_is_refused(stack: Stack) -> None:
    for method, url in (("PUT", f"/api/v1/schools/{URN}"), ("POST", "/api/v1/events")):
        declared = await stack.triage_api.request(
            method, url, content=b" " * (MAX_BODY_BYTES + 1),
            headers={"Content-Type": "application/json"})
        assert declared.status_code == 413, (method, url)
        # Without a Content-Length the cap still holds while the body streams in.
        streamed = await stack.triage_api.request(
            method, url, content=_oversized(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413, (method, url)
    assert await _table(stack, schools) == []


# --- POST /api/v1/events ---------------------------------------------------------------------


async def test_mixed_batch_names_each_bad_item_and_still_accepts_the_good_ones(
    stack: Stack,
) -> None:
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email=None)]),
        pupil("P2", "Tom", contacts=[contact(1, phone="+447700900002", email=None)]),
    ]))
    sally, tom = mark("P1", "N"), mark("P2", "N")
    batch = [sally, mark("P1", "QQ"), mark("P2", urn="999999"),
             {"schema": "register.mark/v1", "event_id": "half-an-event"}, tom]

    response = await stack.post_events(batch)

    assert response.status_code == 422, response.text
    assert response.json()["accepted"] == [sally["event_id"], tom["event_id"]]
    named = {problem["loc"][1] for problem in response.json()["detail"]}
    assert named == {1, 2, 3}, response.json()["detail"]
    assert all(problem["loc"][0] == "body" for problem in response.json()["detail"])

    await stack.processed()
    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(2)
    assert sorted(t["to"] for t in texts) == ["+447700900001", "+447700900002"]


async def test_valid_batch_is_accepted_with_its_event_ids(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1"), pupil("P2", "Tom")]))
    batch = [mark("P1", "N"), mark("P2", "/")]
    response = await stack.post_events(batch)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [event["event_id"] for event in batch], "parked": []}

    single = mark("P2", "L", session="PM")
    response = await stack.post_events(single)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [single["event_id"]], "parked": []}

    await stack.processed()
    stored = [row[0] for row in await _table(stack, received_events)]
    assert sorted(stored) == sorted(event["event_id"] for event in [*batch, single])


async def test_batch_of_more_than_1000_events_is_refused_whole(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    response = await stack.post_events([mark("P1", "N") for _ in range(1001)])
    assert response.status_code == 422
    assert "1000" in response.json()["detail"][0]["msg"]

    # Nothing of it was published: the next event is the first triage receives.
    following = mark("P1", "N")
    assert (await stack.post_events(following)).status_code == 202
    await stack.processed()
    assert [row[0] for row in await _table(stack, received_events)] == [following["event_id"]]


# --- operations ------------------------------------------------------------------------------


async def test_operations_endpoints_answer_on_both_services_without_a_token(
    stack: Stack,
) -> None:
    services = {"triage": (triage_app(stack.triage), "triage_events"),
                "notifier": (notifier_app(stack.notifier), "notifier_notifications")}
    for name, (app, counter) in services.items():
        async with _client(app, f"http://{name}.test") as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            metrics = await client.get("/metrics")
        assert health.status_code == 200, name
        assert ready.status_code == 200, name
        assert ready.json() == {"broker": True, "database": True}, name
        assert metrics.status_code == 200, name
        assert metrics.headers["content-type"].startswith("text/plain"), name
        families = {family.name: family.type
                    for family in text_string_to_metric_families(metrics.text)}
        assert families.get(counter) == "counter", (name, families)
        assert f"{counter}_total" in metrics.text


async def test_tasks_are_listed_and_an_unknown_task_cannot_be_completed(stack: Stack) -> None:
    listed = await stack.triage_api.get("/api/v1/tasks", params={"school_urn": URN})
    assert listed.status_code == 200 and listed.json() == []
    completed = await stack.triage_api.post("/api/v1/tasks/999/complete",
                                            json={"outcome": "visited, all well"})
    assert completed.status_code == 404
