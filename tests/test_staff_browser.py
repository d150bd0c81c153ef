"""The staff web app in a real browser (Debian's chromium, driven by Playwright) against the
real services, broker and database: the attendance officer's morning, a social worker's
view, the lists and their CSV, and axe-core on every page (docs/staff.md)."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from staff.access import Role
from staff.app import build, create_app, migrate
from staff.context import StaffApp
from staff.settings import StaffSettings
from triage.tasks import open_task

from tests.browser import assert_accessible, desktop_context, phone_context, screenshot, served
from tests.factories import LONDON, MONDAY, contact, mark, pupil, school
from tests.stack import API_TOKEN, Stack

PASSWORD = "a long demo password"
SOCIAL_WORKER = {"name": "Sam Worker", "email": "sam.worker@council.example"}


@dataclass
class Staff:
    url: str
    app: StaffApp
    stack: Stack


@contextlib.asynccontextmanager
async def staff_app(stack: Stack, tmp_path: object) -> AsyncIterator[Staff]:
    async with stack.served() as (triage_url, notifier_url):
        settings = StaffSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/staff.db", triage_url=triage_url,
            notifier_url=notifier_url, api_token=API_TOKEN, refresh_seconds=1)  # type: ignore[arg-type]
        app = build(settings, clock=stack.clock)
        await migrate(app.engine)
        now = stack.clock.now()
        for email, name, role, schools in (
                ("officer@millbrook.example", "R Baish", Role.ATTENDANCE_OFFICER, ["123456"]),
                ("dsl@millbrook.example", "D Lead", Role.DSL, ["123456"]),
                (SOCIAL_WORKER["email"], SOCIAL_WORKER["name"], Role.SOCIAL_WORKER, None)):
            await app.accounts.create(email=email, name=name, role=role, password=PASSWORD,
                                      schools=schools, now=now)
        async with served(create_app(app)) as url:
            yield Staff(url, app, stack)
        await app.engine.dispose()


async def sign_in(page: Page, staff: Staff, email: str, next: str = "") -> None:
    await page.goto(f"{staff.url}/login" + (f"?next={next}" if next else ""))
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


MORNING_SCHOOL = school([
    pupil("P1", "Sally", "Smith", contacts=[contact(1, phone="+447700900001", email=None)]),
    pupil("P2", "Tom", "Jones", contacts=[contact(1, phone="+447700900002", email=None)],
          social_worker=SOCIAL_WORKER),
    pupil("P3", "Ada", "Brown", contacts=[contact(1, phone="+447700900003", email=None)]),
    pupil("P4", "Noor", "Khan", contacts=[contact(1, phone="+447700900004", email=None)]),
], policy={"first_day_contact": {"not_before": "07:00"}})


async def _morning(stack: Stack) -> None:
    """Registers taken at 07:20 (a breakfast club); the first-day texts are handed over at
    07:30 and held by quiet hours until 08:00."""
    stack.at(7, 20)
    assert (await stack.put_school(MORNING_SCHOOL)).status_code == 200
    recorded = dt.datetime.combine(MONDAY, dt.time(7, 20), tzinfo=LONDON)
    await stack.publish(mark("P1", "N", recorded=recorded), mark("P2", "N", recorded=recorded),
                        mark("P3", "/", recorded=recorded))
    await stack.processed()
    stack.at(7, 30)
    await stack.run_due()
    await stack.handed_over()


async def test_officer_records_illness_and_the_held_text_never_goes(
        stack: Stack, chromium: Browser, tmp_path: object) -> None:
    await _morning(stack)
    async with staff_app(stack, tmp_path) as staff, desktop_context(chromium) as context:
        page = await context.new_page()
        await sign_in(page, staff, "officer@millbrook.example")
        assert page.url.endswith("/schools/123456/today")
        rows = page.locator("#today-rows tbody tr")
        await expect(rows).to_have_count(3)  # P1, P2 unexplained; P4 has no mark (after 07:00)
        sally = page.locator("tr[data-pupil='P1']")
        await expect(sally.locator(".state")).to_have_text("Held until 08:00")
        await expect(page.locator("tr[data-pupil='P4']")).to_contain_text("No mark")
        await assert_accessible(page, "Today")
        await screenshot(page, "today-desktop")

        await sally.get_by_role("link", name=re.compile("Record what happened")).click()
        await assert_accessible(page, "Record what happened")
        await screenshot(page, "record-desktop")
        await page.get_by_label("Illness").check()
        await page.get_by_label("Office comment").fill("mum phoned at 07:40")
        await page.get_by_role("button", name="Record the reason").click()
        await expect(page.get_by_role("status").first).to_contain_text("Recorded")

        await stack.processed()
        await stack.handed_over()
        stack.at(8, 0)
        await stack.dispatch_due()
        await stack.sent(1)
        sent_to = [m["to"] for m in stack.twilio.messages]
        assert sent_to == ["+447700900002"], "Sally's held text was cancelled; Tom's went"
        await page.reload()
        await expect(page.locator("tr[data-pupil='P1']")).to_have_count(0)

    history = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                          params={"school_urn": "123456"})).json()
    recoded = [m for m in history["mark_history"] if m["code"] == "I"]
    assert recoded and recoded[0]["source"] == "staff:u1"


async def test_a_reply_appears_on_today_without_a_reload(
        stack: Stack, chromium: Browser, tmp_path: object) -> None:
    await _morning(stack)
    stack.at(8, 0)
    await stack.dispatch_due()
    await stack.sent(2)
    async with staff_app(stack, tmp_path) as staff, phone_context(chromium) as context:
        page = await context.new_page()
        await sign_in(page, staff, "officer@millbrook.example")
        tom = page.locator("tr[data-pupil='P2']")
        await expect(tom.locator(".state")).to_have_text("Sent")
        await screenshot(page, "today-phone")
        assert (await stack.inbound_sms("+447700900002", "He has a temperature, sorry")
                ).status_code == 200
        # No reload: htmx asks for fresh rows every second in this test.
        await expect(tom.locator(".reply")).to_contain_text("He has a temperature",
                                                            timeout=10_000)
        await expect(tom.locator(".state")).to_have_text("Parent replied")
        await assert_accessible(page, "Today on a phone")


async def test_a_social_worker_sees_their_pupil_and_no_other(
        stack: Stack, chromium: Browser, tmp_path: object) -> None:
    await _morning(stack)
    async with staff_app(stack, tmp_path) as staff, desktop_context(chromium) as context:
        page = await context.new_page()
        await sign_in(page, staff, SOCIAL_WORKER["email"],
                      next="/pupils/123456/P2%3Fdate%3D2026-11-23")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Tom Jones")
        await assert_accessible(page, "Pupil page (social worker)")
        await screenshot(page, "pupil-desktop")
        for path in ("/schools/123456/pupils/P1", "/schools/123456/today",
                     "/schools/123456/pupils/P9", "/lists"):
            response = await page.goto(staff.url + path)
            assert response is not None and response.status == 404, path
        await assert_accessible(page, "Not found")
        await page.goto(f"{staff.url}/my-pupils")
        await expect(page.get_by_role("link", name="Tom Jones")).to_be_visible()
        await assert_accessible(page, "My pupils")

        # The school's safeguarding lead sees who looked.
        lead = await context.browser.new_context()  # type: ignore[union-attr]
        lead_page = await lead.new_page()
        await sign_in(lead_page, staff, "dsl@millbrook.example")
        await lead_page.goto(f"{staff.url}/schools/123456/audit")
        viewed = lead_page.locator("tbody tr").filter(has_text="Sam Worker")
        await expect(viewed.first).to_contain_text("viewed")
        await expect(viewed.first).to_contain_text("P2")
        await assert_accessible(lead_page, "Who looked")
        await lead.close()


async def test_the_csv_export_matches_the_list_on_screen(
        stack: Stack, chromium: Browser, tmp_path: object) -> None:
    await _morning(stack)
    async with staff_app(stack, tmp_path) as staff, desktop_context(chromium) as context:
        page = await context.new_page()
        await sign_in(page, staff, "officer@millbrook.example")
        await page.goto(f"{staff.url}/lists?school=123456&list=below_90")
        await assert_accessible(page, "Lists")
        await screenshot(page, "lists-desktop")
        shown = await page.locator("#list-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.pupil)")
        assert shown == ["P2", "P1"]  # both at 0%, then by family name
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name=re.compile("Download the whole list")).click()
        download = await download_info.value
        text = Path(await download.path()).read_text(encoding="utf-8")
        exported = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [row["pupil_id"] for row in exported] == shown
        cells = await page.locator("#list-table tbody tr td[data-label='Attendance']").all_inner_texts()
        assert [f"{float(row['attendance_percent']):.1f}%" for row in exported] == cells


async def test_a_home_visit_is_recorded_from_a_phone_and_a_concern_reaches_the_lead(
        stack: Stack, chromium: Browser, tmp_path: object) -> None:
    await _morning(stack)
    async with stack.triage.engine.begin() as conn:
        await open_task(conn, kind="home_visit", school_urn="123456", pupil_id="P1", day=MONDAY,
                        detail="day 3 of unexplained absence", now=stack.clock.now())
    async with staff_app(stack, tmp_path) as staff:
        async with phone_context(chromium) as context:
            page = await context.new_page()
            await sign_in(page, staff, "officer@millbrook.example", next="/schools/123456/tasks")
            visit = page.get_by_role("article").filter(has_text="Sally Smith")
            await expect(visit).to_contain_text("Not assigned")
            await visit.get_by_label("Assign to").fill("R Baish")
            await visit.get_by_role("button", name="Assign").click()
            visit = page.get_by_role("article").filter(has_text="Sally Smith")
            await expect(visit).to_contain_text("Assigned to R Baish")
            await assert_accessible(page, "Tasks (phone)")
            await screenshot(page, "tasks-phone")
            await visit.get_by_label("Concern: escalate to the safeguarding lead").check()
            await visit.get_by_label("Details").fill("curtains drawn, a neighbour is worried")
            await visit.get_by_role("button", name="Save the outcome").click()
            await expect(page.get_by_role("status")).to_contain_text("Saved")
            await expect(page.get_by_role("article")).to_have_count(0)  # escalations: lead only
        async with desktop_context(chromium) as context:
            page = await context.new_page()
            await sign_in(page, staff, "dsl@millbrook.example", next="/schools/123456/tasks")
            escalation = page.get_by_role("article").filter(has_text="Concern for the safeguarding lead")
            await expect(escalation).to_contain_text("Sally Smith")
            await assert_accessible(page, "Tasks (lead)")
            await screenshot(page, "tasks-desktop")
            await escalation.get_by_label("What did you decide?").fill(
                "referred to children's social care")
            await escalation.get_by_role("button", name="Save the outcome").click()
            await expect(page.get_by_role("status")).to_contain_text("Saved")
    [done] = (await stack.triage_api.get("/api/v1/tasks", params={
        "school_urn": "123456", "kind": "home_visit", "status": "done"})).json()
    assert done["outcome"] == ("concern: curtains drawn, a neighbour is worried "
                               "(recorded by staff:u1)")
    [reviewed] = (await stack.triage_api.get("/api/v1/tasks", params={
        "school_urn": "123456", "kind": "dsl_escalation", "status": "done"})).json()
    assert reviewed["outcome"] == "referred to children's social care (recorded by staff:u2)"


async def test_a_parent_who_texted_first_is_accepted_from_today(
        stack: Stack, chromium: Browser, tmp_path: object) -> None:
    stack.at(7, 20)
    assert (await stack.put_school(MORNING_SCHOOL)).status_code == 200
    stack.at(7, 45)
    await stack.inbound_sms("+447700900001", "Sally has a temperature, not coming in today")
    await stack.notifier_events_processed(1)
    stack.at(8, 52)
    await stack.publish(mark("P1", "N"), mark("P2", "N"))
    await stack.processed()
    stack.at(9, 5)
    async with staff_app(stack, tmp_path) as staff, desktop_context(chromium) as context:
        page = await context.new_page()
        await sign_in(page, staff, "officer@millbrook.example")
        told = page.get_by_role("article").filter(has_text="Sally Smith")
        await expect(told).to_contain_text("Sally has a temperature")
        await expect(page.locator("tr[data-pupil='P1'] .state")).to_have_text(
            "The family told us first")
        await assert_accessible(page, "Today with a family's report")
        await screenshot(page, "today-reported-desktop")
        await told.get_by_label("Reason").select_option("I")
        await told.get_by_role("button", name=re.compile("^Accept")).click()
        await expect(page.get_by_role("status").first).to_contain_text("Accepted")
        await expect(page.get_by_role("heading", name="Families who told us first")
                     ).to_have_count(0)
    await stack.processed()
    timeline = (await stack.triage_api.get("/api/v1/pupils/P1/timeline",
                                           params={"school_urn": "123456"})).json()
    assert [m["code"] for m in timeline["marks"]] == ["I"]


@pytest.mark.parametrize("path", ["/schools/123456/tasks", "/schools/123456/messages",
                                  "/schools/123456/pupils/P1?date=2026-11-23"])
async def test_every_other_page_is_accessible_on_desktop_and_phone(
        stack: Stack, chromium: Browser, tmp_path: object, path: str) -> None:
    await _morning(stack)
    async with staff_app(stack, tmp_path) as staff:
        for make, size in ((desktop_context, "desktop"), (phone_context, "phone")):
            async with make(chromium) as context:
                page = await context.new_page()
                await sign_in(page, staff, "officer@millbrook.example")
                response = await page.goto(staff.url + path)
                assert response is not None and response.status == 200
                await assert_accessible(page, f"{path} ({size})")
                name = path.split("/")[3].split("?")[0]
                await screenshot(page, f"{name}-{size}")
        async with phone_context(chromium) as context:
            page = await context.new_page()
            await page.goto(f"{staff.url}/login")
            await assert_accessible(page, "Sign in (phone)")
            await screenshot(page, "login-phone")
