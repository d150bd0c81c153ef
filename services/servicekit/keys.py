"""API keys: who is calling, which schools they serve and what they may do (docs/security.md
"Keys and permissions").

A key reads `<prefix>_<key id>_<secret>`. The key id is public (it names the key in lists and
logs); the secret is shown once, when the key is made, and only its SHA-256 hash is kept. A
plain hash is enough here because the secret is 32 random bytes, not a password: nothing can
be guessed from it, so a slow, salted hash would add cost and no safety.

`API_TOKEN` is the administrator's key: every scope, every school (`ADMIN`). A person logged
in to the staff web app will be a `Principal` too, made from their session instead of a key."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.database import UtcDateTime


class Scope(StrEnum):
    MARKS_WRITE = "marks:write"
    SCHOOLS_WRITE = "schools:write"
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    TIMELINE_READ = "timeline:read"
    NOTIFICATIONS_READ = "notifications:read"
    REPLIES_READ = "replies:read"
    TEMPLATES_READ = "templates:read"
    # Making, listing and revoking keys: only for a key that serves every school, so that a
    # school's key can never make itself a wider one.
    KEYS_ADMIN = "keys:admin"


@dataclass(frozen=True)
class Principal:
    """The caller of one request. `schools` None: every school (and replies from unknown
    numbers, which belong to none)."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    schools: frozenset[str] | None

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def serves(self, school_urn: str | None) -> bool:
        if self.schools is None:
            return True
        return school_urn is not None and school_urn in self.schools


_SCOPES = frozenset(s.value for s in Scope)
ADMIN = Principal(key_id="admin", name="API_TOKEN", scopes=frozenset(Scope), schools=None)


def api_keys_table(metadata: MetaData, name: str = "api_keys") -> Table:
    """`name` lets two services that share a database each keep their own keys."""
    return Table(
        name,
        metadata,
        Column("id", String(32), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("secret_hash", String(64), nullable=False),
        Column("scopes", JSON, nullable=False),
        # A list of school URNs; null for every school.
        Column("schools", JSON, nullable=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("revoked_at", UtcDateTime, nullable=True),
    )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyProblem(ValueError):
    """A key that may not be made as asked (the message says why)."""


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    scopes: list[str]
    schools: list[str] | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scopes": self.scopes, "schools": self.schools,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


class KeyStore:
    """Makes, lists, revokes and checks the keys of one service (its own table)."""

    def __init__(self, engine: AsyncEngine, table: Table, prefix: str) -> None:
        self.engine = engine
        self.table = table
        self.prefix = prefix

    async def create(self, name: str, scopes: Iterable[str], schools: Collection[str] | None,
                     now: dt.datetime) -> tuple[KeyRecord, str]:
        """The new key's record and the whole key, which is not kept and cannot be shown again."""
        try:
            granted = sorted({Scope(s) for s in scopes})
        except ValueError as error:
            raise KeyProblem(f"unknown scope: {error}") from error
        if not granted:
            raise KeyProblem("a key needs at least one scope")
        if Scope.KEYS_ADMIN in granted and schools is not None:
            raise KeyProblem("keys:admin is only for a key that serves every school")
        urns = sorted(set(schools)) if schools is not None else None
        if urns is not None and not all(u.isdigit() and 6 <= len(u) <= 8 for u in urns):
            raise KeyProblem("schools are URNs of 6 to 8 digits")
        key_id, secret = secrets.token_hex(8), secrets.token_hex(32)
        record = KeyRecord(id=key_id, name=name, scopes=[str(s) for s in granted],
                           schools=urns, created_at=now, revoked_at=None)
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert().values(
                id=key_id, name=name, secret_hash=_hash(secret), scopes=record.scopes,
                schools=urns, created_at=now))
        return record, f"{self.prefix}_{key_id}_{secret}"

    async def list(self) -> list[KeyRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(self.table).order_by(self.table.c.created_at,
                                                                  self.table.c.id))
            return [KeyRecord(id=r.id, name=r.name, scopes=r.scopes, schools=r.schools,
                              created_at=r.created_at, revoked_at=r.revoked_at) for r in rows]

    async def revoke(self, key_id: str, now: dt.datetime) -> bool:
        """False if there is no such key; revoking twice keeps the first time."""
        async with self.engine.begin() as conn:
            found = (await conn.execute(select(self.table.c.id).where(
                self.table.c.id == key_id))).first()
            await conn.execute(update(self.table).where(
                self.table.c.id == key_id, self.table.c.revoked_at.is_(None))
                .values(revoked_at=now))
        return found is not None

    async def principal(self, key: str) -> Principal | None:
        """Who a presented key belongs to; None for a malformed, unknown or revoked key."""
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != self.prefix or not key_id or not secret or len(key_id) > 32:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(self.table).where(
                self.table.c.id == key_id))).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(_hash(secret), row.secret_hash):
            return None
        return Principal(key_id=row.id, name=row.name,
                         scopes=frozenset(Scope(s) for s in row.scopes if s in _SCOPES),
                         schools=frozenset(row.schools) if row.schools is not None else None)
