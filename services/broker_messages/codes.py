"""Register codes (England, from 19 August 2024) — rules.md §1.

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

# Pre-2024 codes (seed 003 appendix 1) -> the 2024 code we store.
# H (agreed holiday) was an authorised absence: stored as C (other authorised circumstances).
LEGACY_CODES: dict[str, str] = {"H": "C", "J": "J1", "Y": "Y1"}

UNEXPLAINED = "N"  # rules.md §1: "Unexplained means code N (no reason yet)".
CLOSURE = "#"


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
