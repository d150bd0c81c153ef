"""Every configuration variable an operator may set today is read under that name.

The names are the public contract (docs/contract.md §1); the settings classes declare them once,
with a prefix per service or per outside system. Each variable is set on its own, in an
environment with nothing else, and read back from the settings object.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mis_sync.settings import MisSyncSettings
from notifier.settings import NotifierSettings
from pydantic import AnyHttpUrl, SecretStr, ValidationError
from servicekit.broker import broker_addresses
from staff.settings import StaffSettings
from triage.settings import TriageSettings

STRONG_TOKEN = "k7Qp2vX9mR4tL8wZ3nB6yH1d"
CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "contract.md"

# (variable, value set, settings class, attribute path, value read back)
VARIABLES: list[tuple[str, str, type[Any], str, object]] = [
    *[(name, value, cls, path, expected) for cls in (TriageSettings, NotifierSettings)
      for name, value, path, expected in [
          ("AMQP_URL", "amqp://u:p@broker:5673/v", "amqp_url", "amqp://u:p@broker:5673/v"),
          ("API_TOKEN", "s3cret", "api_token", "s3cret"),
          ("LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
          ("CLOCK_OFFSET_SECONDS", "-3600.5", "clock_offset_seconds", -3600.5),
          ("CONTACT_SIGNING_KEY", "k" * 32, "contact_signing_key", "k" * 32),
          ("CONTACT_SIGNING_KEY_PREVIOUS", "p" * 32, "contact_signing_key_previous", "p" * 32),
      ]],
    ("TRIAGE_DATABASE_URL", "postgresql+asyncpg://t@db/triage", TriageSettings, "database_url",
     "postgresql+asyncpg://t@db/triage"),
    ("TRIAGE_HOST", "0.0.0.0", TriageSettings, "host", "0.0.0.0"),
    ("TRIAGE_PORT", "9101", TriageSettings, "port", 9101),
    ("TRIAGE_MAX_BODY_BYTES", "65536", TriageSettings, "max_body_bytes", 65536),
    ("TRIAGE_READ_TIMEOUT_SECONDS", "2.5", TriageSettings, "read_timeout_seconds", 2.5),
    ("TRIAGE_MAX_CONNECTIONS", "64", TriageSettings, "max_connections", 64),
    ("TRIAGE_PREFETCH", "150", TriageSettings, "prefetch", 150),
    ("TRIAGE_BATCH_SIZE", "7", TriageSettings, "batch_size", 7),
    ("TRIAGE_SCHEDULER_POLL_SECONDS", "0.25", TriageSettings, "scheduler_poll_seconds", 0.25),
    ("TRIAGE_PARKED_EVENT_DAYS", "14", TriageSettings, "parked_event_days", 14),
    ("TRIAGE_PARKED_EVENT_WARN_DAYS", "3", TriageSettings, "parked_event_warn_days", 3),
    ("TRIAGE_RECEIVED_EVENT_DAYS", "500", TriageSettings, "received_event_days", 500),
    ("NOTIFIER_DATABASE_URL", "postgresql+asyncpg://n@db/notifier", NotifierSettings,
     "database_url", "postgresql+asyncpg://n@db/notifier"),
    ("NOTIFIER_HOST", "0.0.0.0", NotifierSettings, "host", "0.0.0.0"),
    ("NOTIFIER_PORT", "9102", NotifierSettings, "port", 9102),
    ("NOTIFIER_MAX_BODY_BYTES", "65536", NotifierSettings, "max_body_bytes", 65536),
    ("NOTIFIER_READ_TIMEOUT_SECONDS", "2.5", NotifierSettings, "read_timeout_seconds", 2.5),
    ("NOTIFIER_MAX_CONNECTIONS", "64", NotifierSettings, "max_connections", 64),
    ("PUBLIC_BASE_URL", "https://notify.example", NotifierSettings, "public_base_url",
     "https://notify.example"),
    ("TWILIO_ACCOUNT_SID", "AC123", NotifierSettings, "twilio.account_sid", "AC123"),
    ("TWILIO_AUTH_TOKEN", "tw-token", NotifierSettings, "twilio.auth_token", "tw-token"),
    ("TWILIO_FROM", "+447700900123", NotifierSettings, "twilio.sender", "+447700900123"),
    ("TWILIO_MESSAGING_SERVICE_SID", "MG123", NotifierSettings, "twilio.messaging_service_sid",
     "MG123"),
    ("TWILIO_API_BASE", "http://127.0.0.1:9", NotifierSettings, "twilio.api_base",
     "http://127.0.0.1:9"),
    ("SMTP_HOST", "mail.example", NotifierSettings, "smtp.host", "mail.example"),
    ("SMTP_PORT", "587", NotifierSettings, "smtp.port", 587),
    ("SMTP_USERNAME", "office", NotifierSettings, "smtp.username", "office"),
    ("SMTP_PASSWORD", "pw", NotifierSettings, "smtp.password", "pw"),
    ("SMTP_STARTTLS", "true", NotifierSettings, "smtp.starttls", True),
    ("SMTP_FROM", "office@school.example", NotifierSettings, "smtp.sender",
     "office@school.example"),
    ("NOTIFIER_STAFF_URL", "https://staff.example/app", NotifierSettings, "staff_url",
     AnyHttpUrl("https://staff.example/app")),
    ("NOTIFIER_REPLY_DOMAIN", "replies.school.example", NotifierSettings, "reply_domain",
     "replies.school.example"),
    ("NOTIFIER_INBOUND_EMAIL_SECRET", "s3cret", NotifierSettings, "inbound_email_secret",
     "s3cret"),
    ("OUTBOX_DIR", "/srv/outbox", NotifierSettings, "outbox_dir", Path("/srv/outbox")),
    ("TEMPLATES_DIR", "/srv/templates", NotifierSettings, "templates_dir",
     Path("/srv/templates")),
    ("NOTIFIER_PREFETCH", "42", NotifierSettings, "prefetch", 42),
    ("NOTIFIER_SEND_ATTEMPTS", "2", NotifierSettings, "send_attempts", 2),
    ("NOTIFIER_RETRY_INITIAL_SECONDS", "0.5", NotifierSettings, "retry_initial_seconds", 0.5),
    ("NOTIFIER_RETRY_MAX_SECONDS", "12", NotifierSettings, "retry_max_seconds", 12.0),
    ("NOTIFIER_PROVIDER_TIMEOUT", "3.5", NotifierSettings, "provider_timeout_seconds", 3.5),
    ("NOTIFIER_DISPATCH_POLL_SECONDS", "0.2", NotifierSettings, "dispatch_poll_seconds", 0.2),
    ("NOTIFIER_SEND_CONCURRENCY", "32", NotifierSettings, "send_concurrency", 32),
    ("NOTIFIER_DELIVERY_RECEIPT_WAIT_SECONDS", "60", NotifierSettings,
     "delivery_receipt_wait_seconds", 60.0),
    ("NOTIFIER_SMS_PER_SECOND", "25", NotifierSettings, "sms_per_second", 25.0),
    ("NOTIFIER_CALLS_PER_SECOND", "2", NotifierSettings, "calls_per_second", 2.0),
    ("NOTIFIER_REPLY_MATCH_DAYS", "30", NotifierSettings, "reply_match_days", 30),
    ("NOTIFIER_UNMATCHED_REPLY_DAYS", "7", NotifierSettings, "unmatched_reply_days", 7),
    ("NOTIFIER_EARLY_CALLBACK_HOURS", "6", NotifierSettings, "early_callback_hours", 6.0),
    ("STAFF_DATABASE_URL", "postgresql+asyncpg://s@db/staff", StaffSettings, "database_url",
     "postgresql+asyncpg://s@db/staff"),
    ("STAFF_HOST", "0.0.0.0", StaffSettings, "host", "0.0.0.0"),
    ("STAFF_PORT", "9106", StaffSettings, "port", 9106),
    ("STAFF_PUBLIC_URL", "https://staff.example", StaffSettings, "public_url",
     "https://staff.example"),
    ("STAFF_TRIAGE_URL", "http://triage:8001", StaffSettings, "triage_url", "http://triage:8001"),
    ("STAFF_NOTIFIER_URL", "http://notifier:8002", StaffSettings, "notifier_url",
     "http://notifier:8002"),
    ("STAFF_TRIAGE_KEY", "tk_1_x", StaffSettings, "triage_key", "tk_1_x"),
    ("STAFF_NOTIFIER_KEY", "nk_1_x", StaffSettings, "notifier_key", "nk_1_x"),
    ("STAFF_SESSION_HOURS", "8", StaffSettings, "session_hours", 8.0),
    ("STAFF_IDLE_MINUTES", "20", StaffSettings, "idle_minutes", 20.0),
    ("STAFF_MAX_FAILED_LOGINS", "3", StaffSettings, "max_failed_logins", 3),
    ("STAFF_LOCKOUT_MINUTES", "15", StaffSettings, "lockout_minutes", 15.0),
    ("STAFF_REFRESH_SECONDS", "30", StaffSettings, "refresh_seconds", 30.0),
    ("STAFF_MAX_BODY_BYTES", "65536", StaffSettings, "max_body_bytes", 65536),
    ("STAFF_READ_TIMEOUT_SECONDS", "2.5", StaffSettings, "read_timeout_seconds", 2.5),
    ("STAFF_MAX_CONNECTIONS", "64", StaffSettings, "max_connections", 64),
    *[(name, value, MisSyncSettings, path, expected) for name, value, path, expected in [
        ("AMQP_URL", "amqp://u:p@broker:5673/v", "amqp_url", "amqp://u:p@broker:5673/v"),
        ("API_TOKEN", "s3cret", "api_token", "s3cret"),
        ("LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
        ("CLOCK_OFFSET_SECONDS", "-3600.5", "clock_offset_seconds", -3600.5),
        ("MIS_SYNC_DATABASE_URL", "postgresql+asyncpg://m@db/mis", "database_url",
         "postgresql+asyncpg://m@db/mis"),
        ("MIS_SYNC_SCHOOLS_DIR", "/srv/schools", "schools_dir", Path("/srv/schools")),
        ("MIS_SYNC_TRIAGE_URL", "http://triage:8001", "triage_url", "http://triage:8001"),
        ("MIS_SYNC_TRIAGE_KEY", "trk_1_x", "triage_key", "trk_1_x"),
        ("MIS_SYNC_INTERVAL_SECONDS", "60", "interval_seconds", 60.0),
        ("WONDE_API_BASE", "http://127.0.0.1:9/v1.0", "wonde.api_base",
         "http://127.0.0.1:9/v1.0"),
        ("WONDE_TOKEN", "wonde-token", "wonde.token", "wonde-token"),
        ("WONDE_SCHOOLS", "A1930499544:123456,B2:654321", "wonde.schools",
         "A1930499544:123456,B2:654321"),
    ]],
]


@pytest.fixture
def bare_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No configuration from the machine or a stray .env file."""
    monkeypatch.chdir(tmp_path)
    for name in {row[0] for row in VARIABLES}:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _read(settings: object, path: str) -> object:
    value = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.mark.parametrize("name,value,cls,path,expected", VARIABLES,
                         ids=[f"{row[2].__name__}-{row[0]}" for row in VARIABLES])
def test_each_documented_variable_is_read_under_its_name(
    bare_environment: pytest.MonkeyPatch, name: str, value: str, cls: type[Any], path: str,
    expected: object,
) -> None:
    assert _read(cls(), path) != expected, "the default already equals the test value"
    if name.endswith("_HOST"):
        # Listening beyond loopback needs a token fit for the network (test_safe_defaults.py),
        # and the staff app an https address.
        bare_environment.setenv("API_TOKEN", STRONG_TOKEN)
        bare_environment.setenv("STAFF_PUBLIC_URL", "https://staff.example")
    bare_environment.setenv(name, value)
    assert _read(cls(), path) == expected


def test_a_blank_staff_key_falls_back_to_the_api_token(
        bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("STAFF_TRIAGE_KEY", "")
    bare_environment.setenv("API_TOKEN", STRONG_TOKEN)
    assert StaffSettings().service_key("triage") == STRONG_TOKEN


def test_names_are_case_insensitive(bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("triage_port", "9103")
    bare_environment.setenv("smtp_from", "office@school.example")
    assert TriageSettings().port == 9103
    assert NotifierSettings().smtp.sender == "office@school.example"


def test_a_dotenv_file_supplies_variables(bare_environment: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NOTIFIER_PORT=9104\nTWILIO_FROM=+447700900124\n")
    settings = NotifierSettings()
    assert (settings.port, settings.twilio.sender) == (9104, "+447700900124")


def test_one_service_prefix_does_not_configure_the_other(
        bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("TRIAGE_PORT", "9105")
    assert NotifierSettings().port == 8002


def test_the_contract_documents_exactly_these_variables() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)?", CONTRACT.read_text(),
                                re.MULTILINE))
    names = {name for pair in documented for name in pair if name}
    assert names == {row[0] for row in VARIABLES}


@pytest.mark.parametrize("name", ["CONTACT_SIGNING_KEY", "CONTACT_SIGNING_KEY_PREVIOUS"])
def test_a_short_contact_signing_key_is_refused(bare_environment: pytest.MonkeyPatch,
                                                name: str) -> None:
    bare_environment.setenv(name, "k" * 31)
    with pytest.raises(ValidationError, match="at least 32"):
        TriageSettings()


def test_the_staff_url_must_be_a_web_address(bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("NOTIFIER_STAFF_URL", "staff.example")
    with pytest.raises(ValidationError, match="staff_url"):
        NotifierSettings()


def test_amqp_url_may_name_the_nodes_of_a_cluster(bare_environment: pytest.MonkeyPatch) -> None:
    nodes = "amqp://u:p@rabbit-1:5672/v,amqps://u:p@rabbit-2:5671/v, amqp://u:p@rabbit-3/v"
    bare_environment.setenv("AMQP_URL", nodes)
    for cls in (TriageSettings, NotifierSettings, MisSyncSettings):
        assert broker_addresses(cls().amqp_url) == [
            "amqp://u:p@rabbit-1:5672/v", "amqps://u:p@rabbit-2:5671/v", "amqp://u:p@rabbit-3/v"]


@pytest.mark.parametrize("value", ["http://rabbit-1:5672/", "amqp://u:p@rabbit-1/v,",
                                   "amqp://u:p@rabbit-1/v,rabbit-2:5672", "amqp:///v"])
def test_every_broker_address_must_be_an_amqp_url(bare_environment: pytest.MonkeyPatch,
                                                  value: str) -> None:
    bare_environment.setenv("AMQP_URL", value)
    for cls in (TriageSettings, NotifierSettings, MisSyncSettings):
        with pytest.raises(ValidationError, match="amqp:// or amqps://"):
            cls()
