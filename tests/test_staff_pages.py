"""The staff web app's pages without a browser: what each role may do and what it changes in
the services behind it (docs/staff.md). The browser tests (test_staff_browser.py) drive the
same pages in chromium; these cover the rest quickly."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from staff.access import Role
from staff.app import build, create_app, migrate
from staff.contact_state import contact_of
from staff.pages import lists as list_pages
from staff.settings import StaffSettings

from tests.browser import served
from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.processes import free_port
from tests.stack import API_TOKEN, Stack

PASSWORD = "a long test password"
OTHER_URN = "654321"


@contextlib.asynccontextmanager
async def signed_in(stack: Stack, tmp_path: object, role: Role, schools: list[str] | None,
                    email: str = "person@millbrook.example",
                    triage_url: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.served() as (served_triage, notifier_url):
        settings = StaffSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/staff.db",
            triage_url=triage_url or served_triage, notifier_url=notifier_url,
            api_token=API_TOKEN)  # type: ignore[arg-type]
        app = build(settings, clock=stack.clock)
        await migrate(app.engine)
        await app.accounts.create(email=email, name="A Person", role=role, password=PASSWORD,
                                  schools=schools, now=stack.clock.now())
        async with served(create_app(app)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/login", data={"email": email, "password": PASSWORD})
            assert response.status_code == 303, response.text
            yield client
        await app.engine.dispose()


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "every page with a form carries the token"
    return found.group(1)


async def _morning(stack: Stack) -> None:
    stack.at(7, 20)
    assert (await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email=None)]),
        pupil("P2", "Tom", "Jones", contacts=[contact(1, phone="+447700900002", email=None)]),
    ], policy={"first_day_contact": {"not_before": "07:00"}}))).status_code == 200
    recorded = dt.datetime.combine(MONDAY, dt.time(7, 20), tzinfo=LONDON)
    await stack.publish(mark("P1", "N", recorded=recorded), mark("P2", "N", recorded=recorded))
    await stack.processed()
    stack.at(7, 30)
    await stack.run_due()
    await stack.handed_over()


async def test_spoke_to_the_parent_stops_the_held_text_and_keeps_the_mark(
        stack: Stack, tmp_path: object) -> None:
    await _morning(stack)
    async with signed_in(stack, tmp_path, Role.ATTENDANCE_OFFICER, ["123456"]) as client:
        token = await csrf(client, "/schools/123456/pupils/P2/record?date=2026-11-23")
        response = await client.post("/schools/123456/pupils/P2/spoke", data={
            "csrf_token": token, "date": "2026-11-23", "note": "dad says he is at nan's"})
        assert response.status_code == 303
        today = await client.get("/schools/123456/today")
        assert 'data-pupil="P2" data-state="spoken"' in today.text
        page = await client.get("/schools/123456/pupils/P2")
        assert "dad says he is at nan&#39;s" in page.text, "the private note is on the timeline"
    await stack.handed_over()
    stack.at(8, 0)
    await stack.dispatch_due()
    await stack.sent(1)
    assert [m["to"] for m in stack.twilio.messages] == ["+447700900001"]
    assert all("nan" not in m["body"] for m in stack.twilio.messages)
    timeline = (await stack.triage_api.get("/api/v1/pupils/P2/timeline",
                                           params={"school_urn": "123456"})).json()
    assert [m["code"] for m in timeline["marks"]] == ["N"], "the register code stays"


async def test_a_reason_is_refused_with_every_problem_and_nothing_changes(
        stack: Stack, tmp_path: object) -> None:
    await _morning(stack)
    async with signed_in(stack, tmp_path, Role.ATTENDANCE_OFFICER, ["123456"]) as client:
        token = await csrf(client, "/schools/123456/pupils/P1/record?date=2026-11-23")
        response = await client.post("/schools/123456/pupils/P1/recode", data={
            "csrf_token": token, "date": "2026-11-23", "session": "XX", "code": "Z"})
        assert response.status_code == 422
        assert "Choose what the absence was." in response.text
        assert "Choose the morning or the afternoon session." in response.text
        future = await client.post("/schools/123456/pupils/P1/recode", data={
            "csrf_token": token, "date": "2026-12-25", "session": "AM", "code": "I"})
        assert future.status_code == 422 and "There is a problem" in future.text
    timeline = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                           params={"school_urn": "123456"})).json()
    assert [m["code"] for m in timeline["mark_history"]] == ["N"]


async def test_a_local_authority_team_lists_its_schools_and_no_others(
        stack: Stack, tmp_path: object) -> None:
    await _morning(stack)
    other = school([pupil("Q1", "Ravi", "Patel")], urn=OTHER_URN)
    assert (await stack.put_school(other)).status_code == 200
    stack.at(9, 0)
    await stack.publish(mark("Q1", "N", urn=OTHER_URN))
    await stack.processed()
    async with signed_in(stack, tmp_path, Role.LA_OFFICER, ["123456", OTHER_URN]) as client:
        both = await client.get("/lists?list=below_90")
        assert {"P1", "P2", "Q1"} <= set(re.findall(r'data-pupil="(\w+)"', both.text))
        one = await client.get(f"/lists.csv?list=below_90&school={OTHER_URN}")
        assert one.text.splitlines()[1].startswith(f"{OTHER_URN},Q1,Patel,Ravi")
        for path in ("/schools/123456/today", "/schools/123456/tasks", "/lists?school=999999"):
            assert (await client.get(path)).status_code == 404, path
        assert (await client.get("/schools/123456/pupils/P1")).status_code == 200
    async with signed_in(stack, tmp_path, Role.LA_OFFICER, ["123456"],
                         email="la2@county.example") as client:
        listed = await client.get("/lists?list=below_90")
        assert "Q1" not in listed.text, "a school outside the account is never listed"
        assert (await client.get(f"/schools/{OTHER_URN}/pupils/Q1")).status_code == 404


async def test_a_long_list_is_shown_a_page_at_a_time_and_exported_whole(
        stack: Stack, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_pages, "PAGE_SIZE", 1)
    await _morning(stack)
    async with signed_in(stack, tmp_path, Role.ATTENDANCE_OFFICER, ["123456"]) as client:
        first = await client.get("/lists?list=below_90&school=123456")
        second = await client.get("/lists?list=below_90&school=123456&page=2")
        beyond = await client.get("/lists?list=below_90&school=123456&page=9")
        exported = await client.get("/lists.csv?list=below_90&school=123456")
    shown = [re.findall(r'data-pupil="(\w+)"', page.text) for page in (first, second, beyond)]
    assert shown == [["P2"], ["P1"], ["P1"]], "Jones before Smith; past the end: the last page"
    assert "Showing 1 to 1 of 2 pupils" in first.text and 'rel="next"' in first.text
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    assert [line.split(",")[1] for line in exported.text.splitlines()[1:]] == ["P2", "P1"]
    async with signed_in(stack, tmp_path, Role.DSL, ["123456"], email="dsl@millbrook.example"
                         ) as lead:
        audit = await lead.get("/schools/123456/audit")
    assert "exported: Attendance below 90%: 2 pupils" in audit.text


async def test_a_csv_cell_is_never_a_spreadsheet_formula(stack: Stack, tmp_path: object) -> None:
    assert (await stack.put_school(school([pupil("P1", "=HYPERLINK(1)", "Smith")]))
            ).status_code == 200
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    async with signed_in(stack, tmp_path, Role.ATTENDANCE_OFFICER, ["123456"]) as client:
        exported = await client.get("/lists.csv?list=below_90&school=123456")
    assert exported.headers["content-disposition"].startswith("attachment;")
    assert ",'=HYPERLINK(1)," in exported.text


async def test_a_service_that_does_not_answer_is_reported_and_nothing_is_half_saved(
        stack: Stack, tmp_path: object) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with signed_in(stack, tmp_path, Role.ATTENDANCE_OFFICER, ["123456"],
                         triage_url=closed) as client:
        response = await client.get("/schools/123456/today")
    assert response.status_code == 503
    assert "nothing you entered has been lost or half-saved" in response.text


def test_the_contact_state_follows_the_furthest_point_reached() -> None:
    now = dt.datetime(2026, 11, 23, 7, 30, tzinfo=dt.UTC)
    held = {"rule": "first_day_contact", "recipient_role": "parent", "status": "pending",
            "due_at": "2026-11-23T08:00:00+00:00", "created_at": now.isoformat()}
    absence = {"actions": [{"rule": "first_day_contact", "status": "requested",
                            "due_at": now.isoformat()}], "replies": [], "open_tasks": []}
    assert contact_of(absence, [held], [], now).state.label == "Held until 08:00"
    assert contact_of(absence, [held | {"status": "failed"}], [], now).state.attention
    assert contact_of(absence, [held, held | {"status": "delivered"}], [], now
                      ).state.key == "delivered"
    assert contact_of(absence, [held], [{"body": "ill"}], now).state.key == "replied"
    # Written to the local outbox is not sent: nobody told the family.
    written = contact_of(absence, [held | {"status": "written"}], [], now).state
    assert (written.key, written.attention) == ("written", True)
    assert "Not sent" in written.label
    unreachable = absence | {"open_tasks": [{"kind": "family_unreachable"}]}
    assert contact_of(unreachable, [], [], now).state.key == "unreachable"
    waiting = {"actions": [{"rule": "first_day_contact", "status": "pending",
                            "due_at": "2026-11-23T09:30:00+00:00"}]}
    assert contact_of(waiting, [], [], now).state.label == "Scheduled for 09:30"
    assert contact_of({"actions": []}, [], [], now).state.key == "none"
    # A professional's alert is not the family's contact.
    alert = held | {"rule": "social_worker_unexplained", "recipient_role": "social_worker",
                    "status": "delivered"}
    assert contact_of(absence, [alert], [], now).state.key == "requested"


async def test_what_a_family_texted_first_is_on_today_and_accepted_from_there(
        stack: Stack, tmp_path: object) -> None:
    await stack.put_school(school([
        pupil("P1", "Tom", contacts=[contact(1, phone="+447700900001", email=None)]),
        pupil("P2", "Ada", contacts=[contact(1, phone="+447700900002", email=None)]),
    ]))
    stack.at(7, 45)
    await stack.inbound_sms("+447700900001", "Tom has a temperature, not coming in today")
    await stack.inbound_sms("+447700900002", "Ada's tooth came out")
    await stack.notifier_events_processed(2)
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"), mark("P2", "N"))
    await stack.processed()
    stack.at(9, 5)
    async with signed_in(stack, tmp_path, Role.ATTENDANCE_OFFICER, ["123456"]) as client:
        today = await client.get("/schools/123456/today")
        assert "Families who told us first" in today.text
        assert "Tom has a temperature" in today.text and "tooth came out" in today.text
        token = await csrf(client, "/schools/123456/today")
        pending = (await stack.triage_api.get("/api/v1/schools/123456/explanations",
                                              params={"status": "pending"})).json()
        ids = {p["pupils"][0]["pupil_id"]: p["id"] for p in pending}
        unchosen = await client.post(f"/schools/123456/explanations/{ids['P1']}/accept",
                                     data={"csrf_token": token, "code": ""})
        assert unchosen.status_code == 422
        forged = await client.post(f"/schools/123456/explanations/{ids['P1']}/accept",
                                   data={"csrf_token": "forged", "code": "I"})
        assert forged.status_code == 403
        accepted = await client.post(f"/schools/123456/explanations/{ids['P1']}/accept",
                                     data={"csrf_token": token, "code": "I"})
        assert accepted.status_code == 303 and accepted.headers["location"].endswith(
            "done=accepted")
        dismissed = await client.post(f"/schools/123456/explanations/{ids['P2']}/dismiss",
                                      data={"csrf_token": token})
        assert dismissed.status_code == 303
        again = await client.post(f"/schools/123456/explanations/{ids['P2']}/dismiss",
                                  data={"csrf_token": token})
        assert again.status_code == 409
        today = await client.get("/schools/123456/today?done=accepted")
        assert "Families who told us first" not in today.text
    stack.published_by_triage(1)
    await stack.processed()
    timeline = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                           params={"school_urn": "123456"})).json()
    assert [m["code"] for m in timeline["marks"]] == ["I"]
