"""Tasks: home visits, unreachable families, uncorrected marks, and concerns for the lead."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from staff.access import SAFEGUARDING_LEADS
from staff.backend import NotFound
from staff.pages.common import (
    TASK_KINDS,
    TASK_RESULTS,
    CurrentUser,
    FormUser,
    render,
    school_staff_only,
    staff_app,
)

router = APIRouter()


@router.get("/schools/{urn}/tasks", response_class=HTMLResponse)
async def tasks_page(request: Request, urn: str, user: CurrentUser,
                     done: str | None = None) -> HTMLResponse:
    school_staff_only(user, urn)
    tasks = await staff_app(request).backend.tasks(urn, "open")
    if not user.may(SAFEGUARDING_LEADS):
        tasks = [t for t in tasks if t["kind"] != "dsl_escalation"]
    return render(request, "tasks.html", user, urn=urn, tasks=tasks, results=TASK_RESULTS,
                  kinds=TASK_KINDS, done=done)


@router.post("/schools/{urn}/tasks/{task_id}/complete", response_class=HTMLResponse)
async def complete_task(request: Request, urn: str, task_id: int, user: FormUser,
                        pupil_id: Annotated[str, Form(max_length=64)],
                        result: Annotated[str, Form()] = "",
                        outcome: Annotated[str, Form(max_length=2000)] = "") -> Response:
    school_staff_only(user, urn)
    # A visit or a call: one of TASK_RESULTS. A lead's review of a concern: what they decided.
    if result not in TASK_RESULTS and not (result == "" and outcome.strip()):
        raise HTTPException(422, "Choose what happened, or write what you decided.")
    staff = staff_app(request)
    # Triage keeps the result beside the text ("concern: …") and who recorded it.
    text = " ".join(filter(None, (outcome.strip(), f"(recorded by {user.ref})")))
    try:
        await staff.backend.complete_task(task_id, result or None, text)
    except NotFound:
        raise HTTPException(404, "Not found") from None
    await staff.views.record(user, "task_completed", urn, pupil_id, staff.clock.now(),
                             f"task {task_id}: {result or 'reviewed'}")
    return RedirectResponse(f"/schools/{urn}/tasks?done=saved", status_code=303)


@router.post("/schools/{urn}/tasks/{task_id}/assign", response_class=HTMLResponse)
async def assign_task(request: Request, urn: str, task_id: int, user: FormUser,
                      pupil_id: Annotated[str, Form(max_length=64)],
                      assignee: Annotated[str, Form(max_length=200)] = "") -> Response:
    school_staff_only(user, urn)
    if not assignee.strip():
        raise HTTPException(422, "Say who the task is for.")
    staff = staff_app(request)
    try:
        await staff.backend.assign_task(task_id, assignee.strip())
    except NotFound:
        raise HTTPException(404, "Not found") from None
    await staff.views.record(user, "task_assigned", urn, pupil_id, staff.clock.now(),
                             f"task {task_id}")
    return RedirectResponse(f"/schools/{urn}/tasks?done=assigned", status_code=303)
