"""The configuration variables docs/contract.md §1 documents, per service: what the deployment
tests (tests/test_kubernetes_manifests.py, tests/test_compose_cluster.py) check every variable
a deployment file sets against, and the settings class that reads them."""

from __future__ import annotations

import re
from pathlib import Path

from notifier.settings import NotifierSettings
from pydantic_settings import BaseSettings
from staff.settings import StaffSettings
from triage.settings import TriageSettings

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "contract.md"
SETTINGS: dict[str, type[BaseSettings]] = {
    "triage": TriageSettings, "notifier": NotifierSettings, "staff": StaffSettings,
}
# Of the variables both services read, the staff app reads only these (staff/settings.py).
STAFF_SHARED = {"API_TOKEN", "LOG_LEVEL", "CLOCK_OFFSET_SECONDS"}
# A token every service accepts on a network address: long, random-looking, no placeholder.
STRONG_SECRET = "k7Qp2vX9mR4tL8wZ3nB6yH1dQ"


def documented_settings() -> dict[str, set[str]]:
    """{section title of §1 ("Both services", "Triage", …): the variables its tables name}."""
    text = CONTRACT.read_text(encoding="utf-8")
    part = text[text.index("## 1. "):text.index("\n## 2. ")]
    sections: dict[str, set[str]] = {}
    for block in re.split(r"^### ", part, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        names = sections.setdefault(title.strip(), set())
        for line in body.splitlines():
            if line.startswith("| `"):
                names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return sections


def allowed_settings(service: str) -> set[str]:
    """The variables `service` reads."""
    documented = documented_settings()
    if service == "staff":
        assert STAFF_SHARED <= documented["Both services"]
        return documented["Staff web app"] | STAFF_SHARED
    return documented["Both services"] | documented[service.capitalize()]


def every_setting() -> set[str]:
    return set().union(*documented_settings().values())
