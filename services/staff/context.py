"""What every page needs: the app's settings, clock, stores and the two services' clients,
built once by `staff.app` and kept on the FastAPI app's state."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.clock import Clock
from sqlalchemy.ext.asyncio import AsyncEngine

from staff.accounts import Accounts
from staff.backend import Backend
from staff.sessions import Sessions
from staff.settings import StaffSettings
from staff.views import Views


@dataclass
class StaffApp:
    settings: StaffSettings
    clock: Clock
    engine: AsyncEngine
    accounts: Accounts
    sessions: Sessions
    backend: Backend
    views: Views
