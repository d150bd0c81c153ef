"""Register codes (England, from 19 August 2024) — docs/rules.md "Register codes".

The wire accepts the 2024 codes plus three pre-2024 codes that old MIS exports still send;
those are mapped on arrival (and the use of a legacy code is logged by the consumer).
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    PRESENT = "present"
    APPROVED_ACTIVITY = "approved_activity"
    AUTHORISED = "authorised"
    UNAUTHORISED = "unauthorised"
    NOT_POSSIBLE = "not_possible"


CODE_CATEGORIES: dict[str, Category] = {
    **dict.fromkeys(["/", "\\", "L"], Category.PRESENT),
    **dict.fromkeys(["K", "V", "P", "W", "B"], Category.APPROVED_ACTIVITY),
    **dict.fromkeys(
        ["C1", "C2", "C", "M", "J1", "S", "E", "I", "R", "T"], Category.AUTHORISED
    ),
    **dict.fromkeys(["G", "N", "O", "U"], Category.UNAUTHORISED),
    **dict.fromkeys(
        ["D", "X", "Q", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7", "Z", "#"],
        Category.NOT_POSSIBLE,
    ),
}

# Pre-2024 codes -> the 2024 code we store, keeping the meaning they had when recorded
# (docs/rules.md "Register codes"). H (agreed holiday) was an authorised absence: stored as C.
# J (interview) was an approved educational activity, counted as attending: stored as B.
LEGACY_CODES: dict[str, str] = {"H": "C", "J": "B", "Y": "Y1"}

UNEXPLAINED = "N"  # docs/rules.md: "Unexplained means code N (no reason yet)".
# Arrived after the register closed: an unauthorised absence, but the child was seen.
LATE_AFTER_CLOSE = "U"


def canonical_code(code: str) -> str:
    """The 2024 code for `code`; raises ValueError for a code we do not know."""
    if code in CODE_CATEGORIES:
        return code
    if code in LEGACY_CODES:
        return LEGACY_CODES[code]
    raise ValueError(f"unknown register code {code!r}")


def category(code: str) -> Category:
    return CODE_CATEGORIES[canonical_code(code)]


def is_absence(code: str) -> bool:
    return category(code) in (Category.AUTHORISED, Category.UNAUTHORISED)


def seen_on_site(code: str) -> bool:
    """The child was seen: present, late (before or after the register closed) or at an
    approved activity. Such a session ends an absence episode (docs/rules.md "Episodes")."""
    return (code == LATE_AFTER_CLOSE
            or category(code) in (Category.PRESENT, Category.APPROVED_ACTIVITY))
