"""The pages people use (docs/staff.md), one module per part of the screen."""

from fastapi import APIRouter

from staff.pages import lists, oversight, pupils, signin, tasks, today
from staff.pages.common import install_error_pages

router = APIRouter()
for part in (signin, today, pupils, tasks, lists, oversight):
    router.include_router(part.router)

__all__ = ["install_error_pages", "router"]
