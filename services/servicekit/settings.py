"""The configuration every service shares (docs/contract.md §1), declared once.

Each service subclasses `ServiceSettings` with its own `env_prefix` (`TRIAGE_`, `NOTIFIER_`):
`TRIAGE_PORT` sets triage's `port`. A group of settings for one outside system is a settings
class of its own with that system's prefix (`TWILIO_`, `SMTP_`). Names are case-insensitive and
a `.env` file in the working directory may supply them.

A `validation_alias` marks a documented variable whose name cannot follow the prefix: the
deployment-wide ones below, which both services read under the same name, and a few older
names kept because operators rely on them.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.broker import broker_addresses
from servicekit.message_signing import MIN_KEY_LENGTH, SigningKey, signing_keys

# Init arguments use the field names (`database_url=`), the environment the variable names.
SETTINGS_CONFIG = SettingsConfigDict(env_file=".env", extra="ignore", validate_by_name=True)


def _check_broker_addresses(value: str) -> str:
    broker_addresses(value)
    return value


# `AMQP_URL`: one amqp:// or amqps:// URL, or several nodes of one cluster separated by commas.
AmqpUrl = Annotated[str, AfterValidator(_check_broker_addresses)]


class ServiceSettings(BaseSettings):
    """What both services read. Subclasses set `env_prefix` and their own defaults for `port`,
    `database_url` and `prefetch`."""

    model_config = SETTINGS_CONFIG

    # One per deployment, the same variable for both services.
    amqp_url: AmqpUrl = Field("amqp://guest:guest@localhost:5672/", validation_alias="AMQP_URL")
    api_token: SecretStr | None = Field(None, validation_alias="API_TOKEN")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    # Shift the service's clock by this many seconds: for rehearsing a school morning at any
    # hour (demos, drills, crash tests). Never set in production.
    clock_offset_seconds: float | None = Field(None, validation_alias="CLOCK_OFFSET_SECONDS")
    # Triage signs contact commands with this key and the notifier sends only what verifies
    # (servicekit.message_signing); the notifier also accepts the previous key while the key
    # is rotated. Unset, triage signs nothing and the notifier refuses every request.
    contact_signing_key: SecretStr | None = Field(
        None, min_length=MIN_KEY_LENGTH, validation_alias="CONTACT_SIGNING_KEY")
    contact_signing_key_previous: SecretStr | None = Field(
        None, min_length=MIN_KEY_LENGTH, validation_alias="CONTACT_SIGNING_KEY_PREVIOUS")

    # Per service, under its prefix.
    host: str = "127.0.0.1"
    port: int
    database_url: str
    # Messages in flight from the broker.
    prefetch: int

    # The edges of the HTTP server (docs/security.md "Edges and data at rest").
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    read_timeout_seconds: float = Field(15.0, gt=0)
    max_connections: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _token_fit_for_the_network(self) -> Self:
        """Refuse to start with a missing, short or well-known token unless nothing but this
        machine can reach the service (docs/security.md "Safe defaults")."""
        if is_loopback(self.host):
            return self
        problem = weak_token_problem(self.api_token)
        if problem is not None:
            raise ValueError(f"API_TOKEN {problem}: set a long random token (at least "
                             f"{MIN_TOKEN_LENGTH} characters) before listening on {self.host}")
        return self

    def signing_keys(self) -> list[SigningKey]:
        """The contact signing keys that are set, the current one first."""
        return signing_keys(*(key.get_secret_value() if key else None for key in
                              (self.contact_signing_key, self.contact_signing_key_previous)))


MIN_TOKEN_LENGTH = 24
# Placeholders from examples and defaults that an attacker tries first.
WELL_KNOWN_TOKENS = frozenset({
    "change-me", "changeme", "change_me", "secret", "password", "token", "api-token",
    "api_token", "admin", "test", "example", "default", "letmein", "dev", "local",
})


def weak_token_problem(token: SecretStr | None) -> str | None:
    """Why this token must not guard a service others can reach, or None."""
    if token is None or not token.get_secret_value().strip():
        return "is not set"
    value = token.get_secret_value().strip()
    if value.lower() in WELL_KNOWN_TOKENS or "change-me" in value.lower():
        return "is a well-known placeholder"
    if len(value) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters"
    if len(set(value)) < 6:
        return "repeats too few characters"
    return None


def is_loopback(host: str) -> bool:
    """A listen address only this machine can reach (local development)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere, or every interface
