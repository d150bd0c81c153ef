from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# In a source checkout the templates sit at the repository root; an installed image names them
# with TEMPLATES_DIR. Either way they are never looked up relative to the working directory.
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class NotifierSettings(BaseSettings):
    """Contract §1. The only place the notifier reads its environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    database_url: str = Field(
        "sqlite+aiosqlite:///var/notifier.db", validation_alias="NOTIFIER_DATABASE_URL"
    )
    api_token: SecretStr | None = None
    host: str = Field("127.0.0.1", validation_alias="NOTIFIER_HOST")
    port: int = Field(8002, validation_alias="NOTIFIER_PORT")
    log_level: str = "INFO"
    # Shift the service's clock by this many seconds: for rehearsing a school morning at any
    # hour (demos, drills, crash tests). Never set in production.
    clock_offset_seconds: float | None = None
    public_base_url: str = "http://localhost:8002"
    templates_dir: Path = _CHECKOUT_TEMPLATES
    outbox_dir: Path = Path("var/outbox")

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str = "https://api.twilio.com"

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "attendance@localhost"
    smtp_starttls: bool = False

    prefetch: int = Field(100, ge=1, le=300, validation_alias="NOTIFIER_PREFETCH")
    # Retry layer for transient provider errors (tenacity): attempts and the first backoff.
    send_attempts: int = Field(4, ge=1, le=10, validation_alias="NOTIFIER_SEND_ATTEMPTS")
    retry_initial_seconds: float = Field(1.0, ge=0, validation_alias="NOTIFIER_RETRY_INITIAL_SECONDS")
    retry_max_seconds: float = Field(30.0, gt=0, validation_alias="NOTIFIER_RETRY_MAX_SECONDS")
    provider_timeout_seconds: float = Field(15.0, gt=0, validation_alias="NOTIFIER_PROVIDER_TIMEOUT")

    @property
    def claim_expiry_seconds(self) -> float:
        """How long a claimed notification may take to send, retries and backoff included;
        a claim older than this was left by a process that died."""
        retries = self.send_attempts - 1
        return (self.send_attempts * self.provider_timeout_seconds
                + retries * (self.retry_max_seconds + self.retry_initial_seconds) + 5.0)
    dispatch_poll_seconds: float = Field(1.0, gt=0, validation_alias="NOTIFIER_DISPATCH_POLL_SECONDS")
    # docs/rules.md "Contact order": how long a family SMS or call may stay `sent` with no
    # delivery receipt before the next contact is tried.
    delivery_receipt_wait_seconds: float = Field(
        900.0, ge=0, validation_alias="NOTIFIER_DELIVERY_RECEIPT_WAIT_SECONDS"
    )
    # Per-sender rates: a UK long code takes about 10 messages a second; calls are slower.
    sms_per_second: float = Field(10.0, gt=0, validation_alias="NOTIFIER_SMS_PER_SECOND")
    calls_per_second: float = Field(1.0, gt=0, validation_alias="NOTIFIER_CALLS_PER_SECOND")
    # An inbound SMS is matched to contact requests from this many days back.
    reply_match_days: int = Field(14, ge=1, validation_alias="NOTIFIER_REPLY_MATCH_DAYS")

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)
