from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from servicekit.settings import SETTINGS_CONFIG, ServiceSettings

# In a source checkout the templates sit at the repository root; an installed image names them
# with TEMPLATES_DIR. Either way they are never looked up relative to the working directory.
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class TwilioSettings(BaseSettings):
    """`TWILIO_*`: unless both the account SID and the auth token are set, SMS and calls go to
    the local outbox."""

    model_config = SETTINGS_CONFIG | SettingsConfigDict(env_prefix="TWILIO_")

    account_sid: str | None = None
    auth_token: SecretStr | None = None
    # `from` is a Python keyword.
    sender: str | None = Field(None, validation_alias="TWILIO_FROM")
    messaging_service_sid: str | None = None
    api_base: str = "https://api.twilio.com"


class SmtpSettings(BaseSettings):
    """`SMTP_*`: with no host, email goes to the local outbox."""

    model_config = SETTINGS_CONFIG | SettingsConfigDict(env_prefix="SMTP_")

    host: str | None = None
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    # `from` is a Python keyword.
    sender: str = Field("attendance@localhost", validation_alias="SMTP_FROM")
    starttls: bool = False


class NotifierSettings(ServiceSettings):
    """Contract §1. The only place the notifier reads its environment: `NOTIFIER_*`, the
    shared variables (servicekit.settings) and the `TWILIO_*` and `SMTP_*` groups."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_")

    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///var/notifier.db"
    # Contact requests in flight, and at most per transaction.
    prefetch: int = Field(100, ge=1, le=300)

    # Documented without the prefix since the first release.
    public_base_url: str = Field("http://localhost:8002", validation_alias="PUBLIC_BASE_URL")
    templates_dir: Path = Field(_CHECKOUT_TEMPLATES, validation_alias="TEMPLATES_DIR")
    outbox_dir: Path = Field(Path("var/outbox"), validation_alias="OUTBOX_DIR")
    # The staff web app's base URL: professional alerts link to the pupil there. Unset: no link.
    staff_url: AnyHttpUrl | None = None
    # Family emails: replies go to reply+{notification id}@{reply_domain}, a domain whose mail
    # an inbound-parse provider posts to POST /inbound/email. Unset: no Reply-To is set.
    reply_domain: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    # HMAC-SHA256 key of that webhook's X-Signature. Unset: the webhook answers 404.
    inbound_email_secret: SecretStr | None = None

    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)

    # Retry layer for transient provider errors (tenacity): attempts and the first backoff.
    send_attempts: int = Field(4, ge=1, le=10)
    retry_initial_seconds: float = Field(1.0, ge=0)
    retry_max_seconds: float = Field(30.0, gt=0)
    # Documented as NOTIFIER_PROVIDER_TIMEOUT (in seconds).
    provider_timeout_seconds: float = Field(
        15.0, gt=0, validation_alias="NOTIFIER_PROVIDER_TIMEOUT"
    )
    dispatch_poll_seconds: float = Field(1.0, gt=0)
    # Provider calls in flight at once: at 250 ms a call, 25 reach 100 a second; 64 leave room
    # for slower answers and retries.
    send_concurrency: int = Field(64, ge=1, le=500)
    # docs/rules.md "Contact order": how long a family SMS or call may stay `sent` with no
    # delivery receipt before the next contact is tried.
    delivery_receipt_wait_seconds: float = Field(900.0, ge=0)
    # Per-sender rates: a UK long code takes about 10 messages a second; calls are slower.
    sms_per_second: float = Field(10.0, gt=0)
    calls_per_second: float = Field(1.0, gt=0)
    # An inbound SMS is matched to contact requests from this many days back.
    reply_match_days: int = Field(14, ge=1)
    # Retention (docs/security.md "Retention"): replies from numbers no school texted, and
    # status callbacks for a provider id never recorded (a send abandoned after Twilio took it).
    unmatched_reply_days: int = Field(30, ge=1)
    early_callback_hours: float = Field(24.0, gt=0)

    @property
    def claim_expiry_seconds(self) -> float:
        """How long a claimed notification may take to send, retries and backoff included;
        a claim older than this was left by a process that died."""
        retries = self.send_attempts - 1
        return (self.send_attempts * self.provider_timeout_seconds
                + retries * (self.retry_max_seconds + self.retry_initial_seconds) + 5.0)
