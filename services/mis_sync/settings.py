"""The MIS sync's settings (docs/contract.md §1 "MIS sync"): `MIS_SYNC_` variables of its own,
the Wonde group under `WONDE_`, and the deployment-wide `AMQP_URL`, `API_TOKEN`, `LOG_LEVEL`
and `CLOCK_OFFSET_SECONDS` under their usual names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings
from servicekit.settings import SETTINGS_CONFIG, AmqpUrl

# Wonde school ids are a letter and digits (`A1930499544`); URNs 6-8 digits (as the events).
_SCHOOL_ENTRY = re.compile(r"^(?P<wonde>[A-Za-z0-9]{1,32}):(?P<urn>[0-9]{6,8})$")


@dataclass(frozen=True)
class SchoolLink:
    """One school that approved the app in Wonde, and its URN in our services."""

    wonde_id: str
    urn: str


def parse_schools(value: str) -> tuple[SchoolLink, ...]:
    """`A1930499544:123456,B2…:654321`; raises ValueError naming every bad entry."""
    links: list[SchoolLink] = []
    problems: list[str] = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        if (match := _SCHOOL_ENTRY.match(entry)) is None:
            problems.append(f"{entry!r} is not wonde_school_id:URN")
        else:
            links.append(SchoolLink(match["wonde"], match["urn"]))
    for kind, values in (("Wonde school id", [s.wonde_id for s in links]),
                         ("URN", [s.urn for s in links])):
        problems += [f"{kind} {v} is listed twice" for v in sorted(set(values))
                     if values.count(v) > 1]
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(links)


class WondeSettings(BaseSettings):
    model_config = SETTINGS_CONFIG | {"env_prefix": "WONDE_"}

    api_base: str = "https://api.wonde.com/v1.0"
    token: SecretStr | None = None
    schools: str = ""

    @field_validator("schools")
    @classmethod
    def _school_list(cls, value: str) -> str:
        parse_schools(value)
        return value

    def links(self) -> tuple[SchoolLink, ...]:
        return parse_schools(self.schools)


class MisSyncSettings(BaseSettings):
    model_config = SETTINGS_CONFIG | {"env_prefix": "MIS_SYNC_"}

    amqp_url: AmqpUrl = Field("amqp://guest:guest@localhost:5672/", validation_alias="AMQP_URL")
    api_token: SecretStr | None = Field(None, validation_alias="API_TOKEN")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    clock_offset_seconds: float | None = Field(None, validation_alias="CLOCK_OFFSET_SECONDS")

    # Cursors and each school's state (see mis_sync/store.py for why a database).
    database_url: str = "sqlite+aiosqlite:///var/mis_sync.db"
    # `{URN}.json` per school: its name, calendar, staff, local authority and policy, which
    # Wonde does not hold; the pupils come from Wonde.
    schools_dir: Path = Path("var/schools")
    triage_url: str = "http://127.0.0.1:8001"
    # The key PUT /schools is called with (scope schools:write); API_TOKEN when unset.
    triage_key: SecretStr | None = None
    interval_seconds: float = Field(300.0, ge=10)

    wonde: WondeSettings = Field(default_factory=WondeSettings)

    def triage_token(self) -> str:
        key = self.triage_key or self.api_token
        if key is None or not key.get_secret_value().strip():
            raise ValueError("set MIS_SYNC_TRIAGE_KEY (or API_TOKEN)")
        return key.get_secret_value()
