"""Safe defaults and data at rest (docs/security.md "Safe defaults", "Edges and data at rest"):
a service others can reach will not start on a weak token, and what holds pupils' details is
created readable by its owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from notifier.providers import OutgoingMessage
from notifier.providers.outbox import OutboxFile
from notifier.settings import NotifierSettings
from pydantic import SecretStr, ValidationError
from servicekit.database import make_engine
from sqlalchemy import text
from triage.settings import TriageSettings

ROOT = Path(__file__).resolve().parents[1]
STRONG = "k7Qp2vX9mR4tL8wZ3nB6yH1d"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def bare_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("API_TOKEN", "TRIAGE_HOST", "NOTIFIER_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("settings_class", [TriageSettings, NotifierSettings])
@pytest.mark.parametrize("token", [None, "", "change-me", "CHANGEME", "secret", "password",
                                   "token", "s3cret-but-short", "x" * 40])
def test_a_service_listening_beyond_loopback_refuses_a_weak_token(
        settings_class: type[TriageSettings | NotifierSettings], token: str | None) -> None:
    with pytest.raises(ValidationError, match="API_TOKEN"):
        settings_class(host="0.0.0.0",
                       api_token=None if token is None else SecretStr(token))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_local_development_on_loopback_may_use_any_token(host: str) -> None:
    assert TriageSettings(host=host, api_token=SecretStr("change-me")).host == host
    assert NotifierSettings(host=host).api_token is None


def test_a_long_random_token_may_listen_anywhere() -> None:
    settings = TriageSettings(host="0.0.0.0", api_token=SecretStr(STRONG))
    assert settings.api_token is not None and settings.api_token.get_secret_value() == STRONG


def test_the_refusal_never_shows_the_token() -> None:
    with pytest.raises(ValidationError) as refused:
        TriageSettings(host="0.0.0.0", api_token=SecretStr("hunter2-hunter2"))
    assert "hunter2" not in str(refused.value)


async def test_a_sqlite_database_and_its_directory_are_the_owners_only(tmp_path: Path) -> None:
    database = tmp_path / "var" / "state" / "triage.db"
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await engine.dispose()
    assert _mode(database) == 0o600
    assert _mode(database.parent) == 0o700 and _mode(database.parent.parent) == 0o700
    for companion in database.parent.glob("triage.db-*"):  # the WAL and its index
        assert _mode(companion) == 0o600, companion.name


async def test_outbox_files_and_their_directory_are_the_owners_only(tmp_path: Path) -> None:
    outbox = OutboxFile(tmp_path / "outbox", "Twilio account")
    message = OutgoingMessage(notification_id="n7", channel="sms", to="+447700900001",
                              body="Sally was not in school today.")
    assert (await outbox.send(message)).status == "written", "a file is not a sent message"
    assert _mode(tmp_path / "outbox") == 0o700
    assert [_mode(path) for path in (tmp_path / "outbox").iterdir()] == [0o600]


def test_the_local_run_creates_its_token_file_for_the_owner_only() -> None:
    script = (ROOT / "scripts" / "run-local.sh").read_text()
    prelude = script[:script.index("export API_TOKEN")]
    assert "umask 077" in prelude
    # Run the part that creates var/api-token in a scratch directory.
    scratch = Path.cwd()
    (scratch / "scripts").mkdir()
    (scratch / ".venv" / "bin").mkdir(parents=True)
    (scratch / ".venv" / "bin" / "python").symlink_to(Path(sys.executable))
    (scratch / "scripts" / "run-local.sh").write_text(prelude)
    subprocess.run(["bash", str(scratch / "scripts" / "run-local.sh")], check=True,
                   env={"PATH": os.environ["PATH"]}, umask=0o022)
    assert _mode(scratch / "var") == 0o700
    assert _mode(scratch / "var" / "api-token") == 0o600
    assert _mode(scratch / "var" / "twilio-auth-token") == 0o600
