"""Who may see what (docs/staff.md "Roles"). A person's role and schools decide which pages
they reach and which pupils; a social worker's pupils are the ones allocated to them in the
schools' rosters, asked of triage at sign-in time of each request, never stored here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    ATTENDANCE_OFFICER = "attendance_officer"
    DSL = "dsl"
    HEADTEACHER = "headteacher"
    LA_OFFICER = "la_officer"
    SOCIAL_WORKER = "social_worker"


ROLE_NAMES = {
    Role.ADMIN: "Administrator",
    Role.ATTENDANCE_OFFICER: "Attendance officer",
    Role.DSL: "Designated safeguarding lead",
    Role.HEADTEACHER: "Headteacher",
    Role.LA_OFFICER: "Local authority attendance team",
    Role.SOCIAL_WORKER: "Social worker or virtual school",
}

# Who works a school's morning (Today, tasks, messages, recording what happened).
SCHOOL_STAFF = frozenset({Role.ADMIN, Role.ATTENDANCE_OFFICER, Role.DSL, Role.HEADTEACHER})
# Who reads the log of who looked at which child, and the escalations.
SAFEGUARDING_LEADS = frozenset({Role.ADMIN, Role.DSL, Role.HEADTEACHER})
# Who sees the lists (below 90%, persistent and severe absence, penalty notices).
LIST_READERS = SCHOOL_STAFF | {Role.LA_OFFICER}


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    role: Role
    # None: every school (administrators).
    schools: frozenset[str] | None

    @property
    def ref(self) -> str:
        """How the services' records name this person (an id, never a name or address)."""
        return f"staff:u{self.id}"

    def serves(self, school_urn: str) -> bool:
        if self.role is Role.SOCIAL_WORKER:
            return False  # by allocated pupil only (Viewer.may_see)
        return self.schools is None or school_urn in self.schools

    def may(self, roles: frozenset[Role]) -> bool:
        return self.role in roles

    @property
    def home(self) -> str:
        if self.role is Role.SOCIAL_WORKER:
            return "/my-pupils"
        if self.role is Role.LA_OFFICER:
            return "/lists"
        if self.schools and len(self.schools) == 1:
            return f"/schools/{next(iter(self.schools))}/today"
        return "/schools"
