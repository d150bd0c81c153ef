"""The staff web app's settings (docs/contract.md §1): `STAFF_` variables, and the service
URLs and keys it calls triage and the notifier with."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings
from servicekit.settings import SETTINGS_CONFIG, is_loopback


class StaffSettings(BaseSettings):
    model_config = SETTINGS_CONFIG | {"env_prefix": "STAFF_"}

    host: str = "127.0.0.1"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///var/staff.sqlite3"
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    clock_offset_seconds: float | None = Field(None, validation_alias="CLOCK_OFFSET_SECONDS")
    # Where people reach the app: an https address makes the session cookie Secure.
    public_url: str = "http://127.0.0.1:8003"

    triage_url: str = "http://127.0.0.1:8001"
    notifier_url: str = "http://127.0.0.1:8002"
    # The keys the app calls the services with (docs/security.md "The staff web app"); both
    # default to the administrator's API_TOKEN, which a deployment should replace with keys
    # scoped to the schools this app serves.
    triage_key: SecretStr | None = None
    notifier_key: SecretStr | None = None
    api_token: SecretStr | None = Field(None, validation_alias="API_TOKEN")

    # A session ends after this long, or after `idle_minutes` without a request.
    session_hours: float = Field(10.0, gt=0, le=24)
    idle_minutes: float = Field(60.0, gt=0)
    # Failed sign-ins before an account waits, and the first wait (it doubles each time).
    max_failed_logins: int = Field(5, ge=1, le=50)
    lockout_minutes: float = Field(5.0, gt=0)
    # How often the Today screen asks for fresh rows.
    refresh_seconds: float = Field(15.0, ge=1)

    max_body_bytes: int = Field(256 * 1024, ge=1024)
    read_timeout_seconds: float = Field(15.0, gt=0)
    max_connections: int = Field(256, ge=1)

    @field_validator("triage_key", "notifier_key", "api_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable (compose passes `${STAFF_TRIAGE_KEY:-}` through) means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _keys_fit_for_the_network(self) -> Self:
        if not is_loopback(self.host) and not self.public_url.startswith("https://"):
            raise ValueError("STAFF_PUBLIC_URL must be an https:// address before listening on "
                             f"{self.host}: sessions and passwords must not cross a network "
                             "in the clear")
        return self

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def service_key(self, which: str) -> str:
        key = {"triage": self.triage_key, "notifier": self.notifier_key}[which] or self.api_token
        if key is None:
            raise ValueError(f"set STAFF_{which.upper()}_KEY (or API_TOKEN)")
        return key.get_secret_value()
