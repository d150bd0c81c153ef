from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TriageSettings(BaseSettings):
    """Contract §1. The only place triage reads its environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    database_url: str = Field(
        "sqlite+aiosqlite:///var/triage.db", validation_alias="TRIAGE_DATABASE_URL"
    )
    api_token: SecretStr | None = None
    host: str = Field("127.0.0.1", validation_alias="TRIAGE_HOST")
    port: int = Field(8001, validation_alias="TRIAGE_PORT")
    log_level: str = "INFO"
    # Shift the service's clock by this many seconds: for rehearsing a school morning at any
    # hour (demos, drills, crash tests). Never set in production.
    clock_offset_seconds: float | None = None
    # Consumer tuning: messages in flight, and how many are applied in one transaction. A
    # batch is what arrived while the previous one was applied, about half the prefetch on a
    # busy morning: larger batches spread each transaction's dozen queries over more marks.
    prefetch: int = Field(1000, ge=100, le=2000, validation_alias="TRIAGE_PREFETCH")
    batch_size: int = Field(500, ge=1, le=2000, validation_alias="TRIAGE_BATCH_SIZE")
    scheduler_poll_seconds: float = Field(1.0, validation_alias="TRIAGE_SCHEDULER_POLL_SECONDS")
