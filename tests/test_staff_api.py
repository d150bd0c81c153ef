"""docs/contract.md §3, the staff web app's side of triage's API: the "Today" screen
(`GET /api/v1/schools/{urn}/absences`), the attendance lists (`GET /api/v1/attendance`), a
pupil's record, a social worker's pupils, "we spoke to the family" and the task actions. Each
on both databases, with another school's key refused and bad input answered 422."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import select
from triage import tasks as task_store
from triage.models import scheduled_actions

from tests.factories import LONDON, MONDAY, URN, contact, mark, pupil, school
from tests.scenarios import timeline
from tests.stack import Stack

OTHER = "654321"


async def _key(stack: Stack, scopes: list[str], schools: list[str]) -> dict[str, str]:
    made = await stack.triage_api.post("/api/v1/keys", json={
        "name": "staff app", "scopes": scopes, "schools": schools})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def _problems(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {str(p["loc"][1] if len(p["loc"]) > 1 else p["loc"][-1]) for p in response.json()["detail"]}


def _roster(**document: Any) -> dict[str, Any]:
    worker = {"name": "A Worker", "email": "A.Worker@la.example", "phone": "+447700900200"}
    built = school([
        pupil("P1", "Sally", "Smith", contacts=[contact(1), contact(2, no_contact=True),
                                                 contact(3, phone=None, email=None)]),
        pupil("P2", "Tom", "Brown"),
        pupil("P3", "Ann", "Adams", year_group=5),
        pupil("P4", "Zed", "Young", social_worker=worker),
        pupil("P5", "Lee", "Long", looked_after=True),
    ], **document)
    built["local_authority"]["virtual_school_email"] = "vs@la.example"
    return built


async def _post(stack: Stack, *events: dict[str, Any]) -> None:
    response = await stack.post_events(list(events))
    assert response.status_code == 202, response.text
    await stack.processed()


async def _absences(stack: Stack, **params: str) -> dict[str, Any]:
    response = await stack.triage_api.get(f"/api/v1/schools/{URN}/absences", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_today_lists_unexplained_and_then_missing_marks_with_what_was_done(
        stack: Stack) -> None:
    assert (await stack.put_school(_roster())).status_code == 200
    await _post(stack, mark("P1", "N"), *(mark(p, "/") for p in ("P3", "P4", "P5")))

    early = await _absences(stack)
    assert early["date"] == MONDAY.isoformat() and early["school_day"] is True
    assert early["school_name"] == "Millbrook Primary School"
    assert early["sessions"] == {"AM": {"registers_closed": False},
                                 "PM": {"registers_closed": False}}
    [sally] = early["pupils"]
    assert sally | {"actions": [], "replies": [], "open_tasks": []} == {
        "pupil_id": "P1", "given_name": "Sally", "family_name": "Smith", "year_group": 3,
        "session": "AM", "code": "N", "looked_after": False, "social_worker": False,
        "contacts_allowed": 1, "actions": [], "replies": [], "open_tasks": []}
    [pending] = sally["actions"]
    assert pending["rule"] == "first_day_contact" and pending["status"] == "pending"

    stack.at(9, 30)
    await stack.run_due()
    closed = await _absences(stack)
    assert closed["sessions"]["AM"]["registers_closed"] is True
    assert [(r["pupil_id"], r["session"], r["code"]) for r in closed["pupils"]] == [
        ("P2", "AM", None), ("P1", "AM", "N")], "sorted by family name; P2 has no mark"
    [requested] = [a for a in closed["pupils"][1]["actions"] if a["rule"] == "first_day_contact"]
    assert requested["status"] == "requested" and requested["request_id"]

    stack.at(14, 0)
    afternoon = await _absences(stack)
    assert afternoon["sessions"]["PM"]["registers_closed"] is True
    assert [(r["pupil_id"], r["session"]) for r in afternoon["pupils"]] == [
        ("P2", "AM"), ("P1", "AM"), ("P3", "PM"), ("P2", "PM"), ("P5", "PM"), ("P1", "PM"),
        ("P4", "PM")]

    saturday = await _absences(stack, date="2026-11-28")
    assert saturday["school_day"] is False and saturday["pupils"] == []
    last_week = await _absences(stack, date="2026-11-16")
    assert {r["code"] for r in last_week["pupils"]} == {None}, "a past day's registers closed"

    assert _problems(await stack.triage_api.get(f"/api/v1/schools/{URN}/absences",
                                                params={"date": "23/11/2026"})) == {"date"}
    assert _problems(await stack.triage_api.get("/api/v1/schools/12x/absences")) == {"urn"}
    other = await _key(stack, ["timeline:read"], [OTHER])
    refused = await stack.triage_api.get(f"/api/v1/schools/{URN}/absences", headers=other)
    assert refused.status_code == 403 and "Sally" not in refused.text


async def test_attendance_lists_use_the_rules_own_tests(stack: Stack) -> None:
    document = _roster(policy={"min_possible_sessions": 1})
    assert (await stack.put_school(document)).status_code == 200
    # Sally: N both sessions for the five school days 9-13 November (10 unauthorised sessions
    # within 10 school weeks); the others present those days.
    days = [dt.date(2026, 11, 9) + dt.timedelta(days=n) for n in range(5)]
    events = [mark("P1", "N", day=d, session=s) for d in days for s in ("AM", "PM")]
    events += [mark(p, "/", day=d, session=s) for p in ("P2", "P3", "P4", "P5") for d in days
               for s in ("AM", "PM")]
    await _post(stack, *events)

    async def rows(**params: Any) -> dict[str, Any]:
        response = await stack.triage_api.get("/api/v1/attendance", params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    listed = await rows(school_urn=URN)
    assert listed["truncated"] is False
    assert listed["rows"][0]["pupil_id"] == "P1", "lowest attendance first"
    sally = listed["rows"][0]
    assert sally == {
        "school_urn": URN, "pupil_id": "P1", "given_name": "Sally", "family_name": "Smith",
        "year_group": 3, "possible": 10, "attended": 0, "authorised": 0, "unauthorised": 10,
        "attendance_percent": 0.0, "absence_percent": 100.0, "persistent": True,
        "severe": True, "penalty_notice": True,
        # 08:00 on Monday 23rd: the N of the 13th is checked at 09:30 today, the others were.
        "unexplained_over_5_days": 8}
    assert {r["pupil_id"]: r["attendance_percent"] for r in listed["rows"][1:]} == dict.fromkeys(
        ["P2", "P3", "P4", "P5"], 100.0)
    stack.at(9, 30)
    assert (await rows())["rows"][0]["unexplained_over_5_days"] == 10
    for name in ("below_90", "persistent", "severe", "penalty_notice",
                 "unexplained_over_5_days"):
        assert [r["pupil_id"] for r in (await rows(list=name))["rows"]] == ["P1"], name
    assert [r["pupil_id"] for r in (await rows(year_group=5))["rows"]] == ["P3"]
    cut = await rows(limit=2)
    assert len(cut["rows"]) == 2 and cut["truncated"] is True
    assert (await rows(list="severe", limit=1))["truncated"] is False, "filtered, then cut"

    bad = await stack.triage_api.get("/api/v1/attendance", params={
        "list": "everyone", "limit": 50_001, "year_group": 99, "school_urn": "12"})
    assert _problems(bad) == {"list", "limit", "year_group", "school_urn"}
    other = await _key(stack, ["timeline:read"], [OTHER])
    assert (await stack.triage_api.get("/api/v1/attendance", headers=other)).json() == {
        "rows": [], "truncated": False}
    assert (await stack.triage_api.get("/api/v1/attendance", params={"school_urn": URN},
                                       headers=other)).status_code == 403


async def test_a_pupils_record_and_a_social_workers_pupils(stack: Stack) -> None:
    assert (await stack.put_school(_roster())).status_code == 200
    api = stack.triage_api
    response = await api.get("/api/v1/pupils/P4", params={"school_urn": URN})
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["given_name"] == "Zed" and record["on_roll"] is True
    assert record["removed_on"] is None and record["ehcp"] is False
    assert record["social_worker"] == {"name": "A Worker", "email": "A.Worker@la.example",
                                       "phone": "+447700900200"}
    assert record["contacts"][0] | {"email": None} == {
        "name": "Jane Smith", "relationship": "mother", "priority": 1, "phone": "+447700900001",
        "email": None, "language": "en", "no_contact": False, "attendance_updates": False}
    assert record["school"] == {
        "urn": URN, "name": "Millbrook Primary School", "phone": "+441235764822",
        "attendance_officers": [{"name": "R Baish", "email": "attendance@millbrook.example",
                                 "phone": "+447700900100"}],
        "dsls": [{"name": "Safeguarding Lead", "email": "dsl@millbrook.example",
                  "phone": None}]}
    assert (await api.get("/api/v1/pupils/P9", params={"school_urn": URN})).status_code == 404
    assert _problems(await api.get("/api/v1/pupils/P1")) == {"school_urn"}

    found = await api.get("/api/v1/pupils", params={"social_worker_email": "a.worker@LA.example"})
    assert found.json() == [{"school_urn": URN, "school_name": "Millbrook Primary School",
                             "pupil_id": "P4", "given_name": "Zed", "family_name": "Young",
                             "year_group": 3, "looked_after": False}]
    virtual = await api.get("/api/v1/pupils", params={"social_worker_email": "VS@la.example"})
    assert [p["pupil_id"] for p in virtual.json()] == ["P5"]
    assert (await api.get("/api/v1/pupils", params={
        "social_worker_email": "nobody@la.example"})).json() == []
    assert _problems(await api.get("/api/v1/pupils", params={
        "social_worker_email": "not an address"})) == {"social_worker_email"}

    # Another school's key: refused for the record, and finds none of this school's pupils.
    other = await _key(stack, ["timeline:read"], [OTHER])
    refused = await api.get("/api/v1/pupils/P4", params={"school_urn": URN}, headers=other)
    assert refused.status_code == 403
    assert (await api.get("/api/v1/pupils/P4", params={"school_urn": OTHER},
                          headers=other)).status_code == 404
    assert (await api.get("/api/v1/pupils", params={"social_worker_email": "a.worker@la.example"},
                          headers=other)).json() == []


async def _actions(stack: Stack, pupil_id: str) -> dict[str, str]:
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(select(scheduled_actions.c.rule, scheduled_actions.c.status)
                                  .where(scheduled_actions.c.pupil_id == pupil_id))
        return {rule: status for rule, status in rows}


async def test_contact_made_stops_the_chase_and_takes_back_what_was_handed_over(
        stack: Stack) -> None:
    assert (await stack.put_school(_roster())).status_code == 200
    await _post(stack, mark("P1", "N"), mark("P2", "N"))
    api = stack.triage_api

    # Before 09:30: P2's first-day contact is still pending, and is simply cancelled.
    made = await api.post("/api/v1/pupils/P2/contact-made", params={"school_urn": URN},
                          json={"by": "u1", "note": "Mum rang the office"})
    assert made.status_code == 200, made.text
    assert made.json() == {"cancelled": [f"first_day_contact:{URN}:P2:{MONDAY.isoformat()}"]}
    assert (await _actions(stack, "P2"))["first_day_contact"] == "cancelled"

    # After 09:30: P1's contact was handed to the notifier; it is recalled as an amendment is.
    stack.at(9, 30)
    await stack.run_due()
    await stack.handed_over()
    made = await api.post("/api/v1/pupils/P1/contact-made", params={"school_urn": URN},
                          json={"by": "u1"})
    assert made.json() == {"cancelled": [f"first_day_contact:{URN}:P1:{MONDAY.isoformat()}"]}
    await stack.handed_over()
    assert (await _actions(stack, "P1"))["first_day_contact"] == "cancelled"
    events = await timeline(stack, "P1")
    assert [r["contact_ref"] for r in events["replies"]] == ["staff:u1"]
    assert events["replies"][0]["reply_id"].startswith("staff:")
    [staff] = [d for d in events["decisions"] if d["rule"] == "contact_made"]
    assert staff["reason"] == "staff spoke to the family"
    assert "handed to the notifier is cancelled too" in [
        d for d in events["decisions"] if d["rule"] == "first_day_contact"][-1]["reason"]
    [today] = [r for r in (await _absences(stack))["pupils"] if r["pupil_id"] == "P1"]
    assert [r["contact_ref"] for r in today["replies"]] == ["staff:u1"]

    again = await api.post("/api/v1/pupils/P1/contact-made", params={"school_urn": URN},
                           json={"by": "u1"})
    assert again.status_code == 200 and again.json() == {"cancelled": []}

    assert _problems(await api.post("/api/v1/pupils/P1/contact-made",
                                    params={"school_urn": URN},
                                    json={"by": "", "note": "x" * 2001})) == {"by", "note"}
    assert (await api.post("/api/v1/pupils/P9/contact-made", params={"school_urn": URN},
                           json={"by": "u1"})).status_code == 404
    other = await _key(stack, ["marks:write"], [OTHER])
    assert (await api.post("/api/v1/pupils/P1/contact-made", params={"school_urn": URN},
                           json={"by": "u1"}, headers=other)).status_code == 403
    assert (await api.post("/api/v1/pupils/P1/contact-made", params={"school_urn": OTHER},
                           json={"by": "u1"}, headers=other)).status_code == 404


async def test_a_staff_recode_cancels_the_pending_first_day_contact(stack: Stack) -> None:
    assert (await stack.put_school(_roster())).status_code == 200
    await _post(stack, mark("P1", "N"))
    recoded = mark("P1", "I", recorded=dt.datetime(2026, 11, 23, 9, 0, tzinfo=LONDON),
                   comment="parent phoned: illness")
    stack.at(9, 5)
    await _post(stack, recoded | {"source": "staff:u1"})
    assert (await _actions(stack, "P1"))["first_day_contact"] == "cancelled"


async def test_tasks_are_assigned_completed_and_escalated(stack: Stack) -> None:
    assert (await stack.put_school(_roster())).status_code == 200
    now = stack.clock.now()
    async with stack.triage.engine.begin() as conn:
        for kind in ("home_visit", "family_unreachable"):
            await task_store.open_task(conn, kind=kind, school_urn=URN, pupil_id="P1",
                                       day=MONDAY, detail=f"{kind} for Sally", now=now)
    api = stack.triage_api
    visits = (await api.get("/api/v1/tasks", params={"school_urn": URN,
                                                     "kind": "home_visit"})).json()
    [visit] = visits
    assert visit | {"id": 0, "created_at": "", "updated_at": "", "due_at": ""} == {
        "id": 0, "kind": "home_visit", "school_urn": URN, "pupil_id": "P1",
        "given_name": "Sally", "family_name": "Smith", "episode_start": MONDAY.isoformat(),
        "status": "open", "assignee": None, "detail": "home_visit for Sally", "due_at": "",
        "outcome": None, "created_at": "", "updated_at": ""}

    assigned = await api.post(f"/api/v1/tasks/{visit['id']}/assign", json={"assignee": "u7"})
    assert assigned.status_code == 200 and assigned.json()["assignee"] == "u7"
    done = await api.post(f"/api/v1/tasks/{visit['id']}/complete",
                          json={"result": "concern", "outcome": "bruising seen"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["outcome"] == "concern: bruising seen"
    [escalation] = (await api.get("/api/v1/tasks", params={
        "school_urn": URN, "kind": "dsl_escalation"})).json()
    assert escalation["status"] == "open" and f"task {visit['id']}" in escalation["detail"]
    assert escalation["pupil_id"] == "P1" and escalation["episode_start"] == MONDAY.isoformat()

    assert (await api.post(f"/api/v1/tasks/{visit['id']}/assign",
                           json={"assignee": "u8"})).status_code == 409
    [other_task] = (await api.get("/api/v1/tasks", params={
        "school_urn": URN, "kind": "family_unreachable"})).json()
    old_body = await api.post(f"/api/v1/tasks/{other_task['id']}/complete",
                              json={"outcome": "phoned"})
    assert old_body.status_code == 200 and old_body.json()["outcome"] == "phoned"

    task_id = escalation["id"]
    assert _problems(await api.post(f"/api/v1/tasks/{task_id}/assign",
                                    json={"assignee": ""})) == {"assignee"}
    assert _problems(await api.post(f"/api/v1/tasks/{task_id}/complete",
                                    json={"result": "fine"})) == {"result"}
    assert (await api.post(f"/api/v1/tasks/{task_id}/complete", json={})).status_code == 422
    assert _problems(await api.get("/api/v1/tasks", params={
        "school_urn": URN, "kind": "Home Visit"})) == {"kind"}
    other = await _key(stack, ["tasks:write"], [OTHER])
    for action, body in (("assign", {"assignee": "u1"}), ("complete", {"result": "seen"})):
        refused = await api.post(f"/api/v1/tasks/{task_id}/{action}", json=body, headers=other)
        assert refused.status_code == 404, action
