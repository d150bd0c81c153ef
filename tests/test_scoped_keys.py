"""docs/security.md "Keys and permissions": every caller has a key of its own, limited to the
schools it serves and to what it may do; keys are made, listed and revoked by an administrator,
kept hashed and shown once. The tenancy test walks every route of both services' OpenAPI specs
with a key for another school."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.models import api_keys, explanations, pupils, tasks
from triage.settings import TriageSettings

from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.stack import API_TOKEN, Stack

SCHOOL_A, SCHOOL_B = "123456", "654321"
EVERY_SCOPE_BUT_ADMIN = ["marks:write", "schools:write", "tasks:read", "tasks:write",
                         "timeline:read", "notifications:read", "replies:read", "templates:read"]
OPERATIONS = {"/healthz", "/readyz", "/metrics"}
# What of school A must never reach school B's key: its name, a pupil's name, a parent's number
# and address.
A_MARKERS = ("Ashgrove", "Zebedee", "7700900071", "zeb.parent")


async def _make_key(client: httpx.AsyncClient, scopes: list[str],
                    schools: list[str] | None = None, name: str = "MIS sync") -> dict[str, Any]:
    response = await client.post("/api/v1/keys",
                                 json={"name": name, "scopes": scopes, "schools": schools})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _as(client: httpx.AsyncClient, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_is_shown_once_kept_hashed_and_refused_once_revoked(
    stack: Stack, caplog: pytest.LogCaptureFixture,
) -> None:
    api = stack.triage_api
    made = await _make_key(api, ["tasks:read"], [SCHOOL_B])
    key_id, key = made["id"], made["key"]
    assert key.startswith(f"trk_{key_id}_") and len(key.rsplit("_", 1)[-1]) == 64
    secret = key.removeprefix(f"trk_{key_id}_")

    async with stack.triage.engine.connect() as conn:
        stored = [dict(row._mapping) for row in await conn.execute(select(api_keys))]
    assert [row["id"] for row in stored] == [key_id]
    assert secret not in json.dumps(stored, default=str), "only the hash is kept"

    listed = (await api.get("/api/v1/keys")).json()
    assert listed == [{"id": key_id, "name": "MIS sync", "scopes": ["tasks:read"],
                       "schools": [SCHOOL_B], "created_at": listed[0]["created_at"],
                       "revoked_at": None}]
    assert secret not in json.dumps(listed)

    with caplog.at_level(logging.INFO, logger="servicekit.web"):
        used = await api.get("/api/v1/tasks", params={"school_urn": SCHOOL_B},
                             headers=_as(api, key))
    assert used.status_code == 200 and used.json() == []
    assert f"key_id={key_id}" in caplog.text and secret not in caplog.text

    assert (await api.delete(f"/api/v1/keys/{key_id}")).status_code == 204
    refused = await api.get("/api/v1/tasks", params={"school_urn": SCHOOL_B},
                            headers=_as(api, key))
    assert refused.status_code == 401
    assert (await api.get("/api/v1/keys")).json()[0]["revoked_at"] is not None
    assert (await api.delete("/api/v1/keys/ffff")).status_code == 404
    # A key for triage means nothing to the notifier, and a tampered secret nothing to triage.
    assert (await stack.notifier_api.get("/api/v1/notifications",
                                         headers=_as(api, key))).status_code == 401


async def test_a_key_without_the_scope_gets_403_and_changes_nothing(stack: Stack) -> None:
    api = stack.triage_api
    reader = (await _make_key(api, ["tasks:read"], [SCHOOL_A]))["key"]
    assert (await stack.put_school(school([pupil("P1")]))).status_code == 200
    for method, path, body in (("PUT", f"/api/v1/schools/{SCHOOL_A}", school([])),
                               ("GET", f"/api/v1/schools/{SCHOOL_A}", None),
                               ("PUT", f"/api/v1/schools/{SCHOOL_A}/pupils/P1", pupil("P1")),
                               ("PATCH", f"/api/v1/schools/{SCHOOL_A}/pupils/P1", {}),
                               ("DELETE", f"/api/v1/schools/{SCHOOL_A}/pupils/P1", None),
                               ("POST", "/api/v1/events", [mark("P1")]),
                               ("POST", "/api/v1/keys", {"name": "x", "scopes": ["tasks:read"]}),
                               ("GET", "/api/v1/keys", None)):
        response = await api.request(method, path, json=body, headers=_as(api, reader))
        assert response.status_code == 403, (method, path, response.text)
    async with stack.triage.engine.connect() as conn:
        assert (await conn.execute(select(pupils.c.on_roll))).scalars().all() == [True]


async def test_only_a_key_for_every_school_may_manage_keys(stack: Stack) -> None:
    response = await stack.triage_api.post("/api/v1/keys", json={
        "name": "school admin", "scopes": ["keys:admin"], "schools": [SCHOOL_A]})
    assert response.status_code == 422 and "keys:admin" in response.text


@pytest.mark.parametrize("service", ["triage", "notifier"])
async def test_keys_are_managed_from_the_command_line(tmp_path: Path, service: str) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    env = {**os.environ, f"{service.upper()}_DATABASE_URL": database_url,
           "API_TOKEN": API_TOKEN}

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", service, "keys", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              check=False)

    created = keys("create", "--name", "Ashgrove MIS", "--scope", "marks:write",
                   "--school", SCHOOL_A)
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    assert made["schools"] == [SCHOOL_A] and made["scopes"] == ["marks:write"]
    assert made["key"].startswith({"triage": "trk_", "notifier": "ntk_"}[service])
    listed = keys("list")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [made["id"]]
    assert made["key"].rsplit("_", 1)[-1] not in listed.stdout
    assert keys("create", "--name", "x", "--scope", "keys:admin",
                "--school", SCHOOL_A).returncode == 2
    if service == "notifier":
        assert keys("revoke", made["id"]).returncode == 0
        assert json.loads(keys("list").stdout)["revoked_at"] is not None
        return

    triage = TriageService(TriageSettings(database_url=database_url,
                                          api_token=SecretStr(API_TOKEN)))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=triage_app(triage)),
                                     base_url="http://triage.test") as client:
            wrong_scope = await client.get("/api/v1/tasks", params={"school_urn": SCHOOL_A},
                                           headers={"Authorization": f"Bearer {made['key']}"})
            assert wrong_scope.status_code == 403
            assert keys("revoke", made["id"]).returncode == 0
            revoked = await client.get("/api/v1/tasks", params={"school_urn": SCHOOL_A},
                                       headers={"Authorization": f"Bearer {made['key']}"})
            assert revoked.status_code == 401
    finally:
        await triage.engine.dispose()
    assert keys("revoke", "0123").returncode == 1


# --- the tenancy test -------------------------------------------------------------------------


async def _school_a_with_history(stack: Stack) -> int:
    """School A with a pupil absent, texted and emailed, a parent's reply, a reply from an
    unknown number, a text from a second carer nobody texted (a pending explanation) and an
    open task: something for every route to leak. Returns the task id."""
    document = school([pupil("P1", "Zebedee", contacts=[
        contact(1, phone="+447700900071", email="zeb.parent@example.com"),
        contact(2, phone="+447700900072", email=None)])], urn=SCHOOL_A)
    document["name"] = "Ashgrove Academy"
    assert (await stack.put_school(document)).status_code == 200
    await stack.publish(mark("P1", "N", urn=SCHOOL_A))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() >= 1
    await stack.handed_over()
    await stack.sent(2)
    for sender, sid in (("+447700900071", "SM" + "a" * 32), ("+447700900555", "SM" + "b" * 32),
                        ("+447700900072", "SM" + "c" * 32)):
        reply = await stack.twilio_webhook("/twilio/inbound", {
            "MessageSid": sid, "From": sender, "To": "+447700900999", "Body": "Zebedee is ill"})
        assert reply.status_code == 200
    await stack.notifier_events_processed(3)
    now = dt.datetime.combine(MONDAY, dt.time(10), tzinfo=LONDON)
    async with stack.triage.engine.begin() as conn:
        inserted = await conn.execute(tasks.insert().values(
            kind="home_visit", school_urn=SCHOOL_A, pupil_id="P1", episode_start=MONDAY,
            status="open", detail="Visit Zebedee", created_at=now, updated_at=now))
    task_id: int = inserted.inserted_primary_key[0]
    return task_id


Check = Callable[[httpx.Response], None]


def _refused(response: httpx.Response) -> None:
    assert response.status_code in (403, 404), response.text


def _empty(response: httpx.Response) -> None:
    assert response.status_code == 200 and response.json() == [], response.text


def _events_refused(response: httpx.Response) -> None:
    assert response.status_code == 422 and response.json()["accepted"] == [], response.text
    assert [p["type"] for p in response.json()["detail"]] == ["forbidden"]


def _no_rows(response: httpx.Response) -> None:
    assert response.status_code == 200 and response.json()["rows"] == [], response.text


def _school_free(response: httpx.Response) -> None:
    """A template preview renders sample data, no school's."""
    assert response.status_code == 200, response.text


Call = tuple[dict[str, Any], Any, Check]  # query, JSON body, check


def _tenancy_calls(task_id: int) -> dict[tuple[str, str, str], list[Call]]:
    """How each route of both specs is called with school B's key, asking for school A."""
    a_doc = school([], urn=SCHOOL_A)
    return {
        ("triage", "PUT", "/api/v1/schools/{urn}"): [
            ({}, a_doc, _refused), ({"allow_removals": "true"}, a_doc, _refused)],
        ("triage", "GET", "/api/v1/schools/{urn}"): [({}, None, _refused)],
        ("triage", "PUT", "/api/v1/schools/{urn}/pupils/{pupil_id}"): [
            ({}, pupil("P1", "Mallory"), _refused)],
        ("triage", "PATCH", "/api/v1/schools/{urn}/pupils/{pupil_id}"): [
            ({}, {"given_name": "Mallory"}, _refused)],
        ("triage", "DELETE", "/api/v1/schools/{urn}/pupils/{pupil_id}"): [({}, None, _refused)],
        ("triage", "POST", "/api/v1/events"): [({}, [mark("P1", "I", urn=SCHOOL_A)],
                                                _events_refused)],
        ("triage", "GET", "/api/v1/tasks"): [({"school_urn": SCHOOL_A}, None, _refused)],
        ("triage", "POST", "/api/v1/tasks/{task_id}/complete"): [
            ({}, {"outcome": "visited"}, _refused)],
        ("triage", "POST", "/api/v1/tasks/{task_id}/assign"): [
            ({}, {"assignee": "u1"}, _refused)],
        ("triage", "GET", "/api/v1/pupils/{pupil_id}/timeline"): [
            ({"school_urn": SCHOOL_A}, None, _refused)],
        ("triage", "GET", "/api/v1/pupils/{pupil_id}"): [
            ({"school_urn": SCHOOL_A}, None, _refused)],
        ("triage", "GET", "/api/v1/pupils"): [
            ({"social_worker_email": "attendance@la.example"}, None, _empty)],
        ("triage", "POST", "/api/v1/pupils/{pupil_id}/contact-made"): [
            ({"school_urn": SCHOOL_A}, {"by": "u1"}, _refused)],
        ("triage", "GET", "/api/v1/schools/{urn}/absences"): [({}, None, _refused)],
        ("triage", "GET", "/api/v1/schools/{urn}/parked"): [({}, None, _refused)],
        ("triage", "GET", "/api/v1/schools/{urn}/explanations"): [
            ({}, None, _refused), ({"status": "pending"}, None, _refused)],
        ("triage", "POST", "/api/v1/schools/{urn}/explanations/{explanation_id}/accept"): [
            ({}, {"code": "I", "by": "u1"}, _refused)],
        ("triage", "POST", "/api/v1/schools/{urn}/explanations/{explanation_id}/dismiss"): [
            ({}, {"by": "u1"}, _refused)],
        ("triage", "GET", "/api/v1/attendance"): [
            ({}, None, _no_rows), ({"school_urn": SCHOOL_A}, None, _refused),
            ({"list": "penalty_notice"}, None, _no_rows)],
        ("triage", "POST", "/api/v1/keys"): [({}, {"name": "x", "scopes": ["tasks:read"]},
                                              _refused)],
        ("triage", "GET", "/api/v1/keys"): [({}, None, _refused)],
        ("triage", "DELETE", "/api/v1/keys/{key_id}"): [({}, None, _refused)],
        ("notifier", "GET", "/api/v1/notifications"): [
            ({}, None, _empty), ({"school_urn": SCHOOL_A}, None, _refused),
            ({"pupil_id": "P1"}, None, _empty)],
        ("notifier", "GET", "/api/v1/replies"): [
            ({}, None, _empty), ({"matched": "false"}, None, _empty),
            ({"school_urn": SCHOOL_A}, None, _refused)],
        ("notifier", "GET", "/api/v1/templates/{rule}/preview"): [({}, None, _school_free)],
        ("notifier", "POST", "/api/v1/keys"): [({}, {"name": "x", "scopes": ["tasks:read"]},
                                                _refused)],
        ("notifier", "GET", "/api/v1/keys"): [({}, None, _refused)],
        ("notifier", "DELETE", "/api/v1/keys/{key_id}"): [({}, None, _refused)],
        # Twilio's webhooks take Twilio's signature, not a key.
        ("notifier", "POST", "/twilio/status"): [({}, None, _refused)],
        ("notifier", "POST", "/twilio/inbound"): [({}, None, _refused)],
        # Signed by the inbound-parse provider, not an API key: unsigned is refused.
        ("notifier", "POST", "/inbound/email"): [({}, None, _refused)],
    }


async def test_a_key_for_one_school_sees_nothing_of_another_on_any_route(stack: Stack) -> None:
    task_id = await _school_a_with_history(stack)
    clients = {"triage": stack.triage_api, "notifier": stack.notifier_api}
    # What A's data looks like to the administrator, so an empty answer below means something.
    assert len(await stack.notifications()) == 2
    replies = (await stack.notifier_api.get("/api/v1/replies")).json()
    assert {r["matched"] for r in replies} == {True, False}

    keys = {name: (await _make_key(client, EVERY_SCOPE_BUT_ADMIN, [SCHOOL_B]))
            for name, client in clients.items()}
    path_values = {"urn": SCHOOL_A, "task_id": str(task_id), "pupil_id": "P1",
                   "rule": "first_day_contact", "key_id": keys["triage"]["id"],
                   "explanation_id": "1"}
    calls = _tenancy_calls(task_id)
    spec = {(name, method.upper(), path)
            for name, client in clients.items()
            for path, operations in (await client.get("/openapi.json")).json()["paths"].items()
            if path not in OPERATIONS
            for method in operations}
    assert set(calls) == spec, "every route of both specs is walked, and only those"

    for (name, method, path), variants in calls.items():
        client, key = clients[name], keys[name]["key"]
        url = path.format(**path_values)
        if name == "notifier" and "{key_id}" in path:
            url = path.format(key_id=keys["notifier"]["id"])
        for query, body, check in variants:
            response = await client.request(method, url, params=query, json=body,
                                             headers=_as(client, key))
            check(response)
            assert not any(marker in response.text for marker in A_MARKERS), (path, query)

    # Nothing of A changed: still on roll, task and explanation still open, no key revoked.
    async with stack.triage.engine.connect() as conn:
        assert (await conn.execute(select(pupils.c.on_roll))).scalars().all() == [True]
        assert (await conn.execute(select(tasks.c.status))).scalars().all() == ["open"]
        assert (await conn.execute(select(explanations.c.status))).scalars().all() == ["pending"]
    for name, client in clients.items():
        assert [k["revoked_at"] for k in (await client.get("/api/v1/keys")).json()] == [None]
    # And the key does work for its own school.
    own = await stack.triage_api.get("/api/v1/tasks", params={"school_urn": SCHOOL_B},
                                     headers=_as(stack.triage_api, keys["triage"]["key"]))
    assert own.status_code == 200 and own.json() == []

