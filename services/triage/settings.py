from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from servicekit.settings import ServiceSettings


class TriageSettings(ServiceSettings):
    """Contract §1. The only place triage reads its environment: `TRIAGE_*` and the shared
    variables (servicekit.settings)."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_")

    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///var/triage.db"
    # Consumer tuning: messages in flight, and how many are applied in one transaction. A
    # batch is what arrived while the previous one was applied, about half the prefetch on a
    # busy morning: larger batches spread each transaction's dozen queries over more marks.
    prefetch: int = Field(1000, ge=100, le=2000)
    batch_size: int = Field(500, ge=1, le=2000)
    scheduler_poll_seconds: float = 1.0

    # Retention (docs/security.md "Retention"): marks for pupils the roster never named go
    # after this many days.
    parked_event_days: int = Field(30, ge=1)
    # The deduplication log: a redelivered event is recognised for this long, and never
    # forgotten within the current school year (the timeline's amendment history).
    received_event_days: int = Field(400, ge=1)
    # docs/rules.md "parked_marks_expiring": the officer hears this many days before parked
    # marks are discarded.
    parked_event_warn_days: int = Field(7, ge=1)
