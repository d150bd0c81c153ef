"""Sign-in sessions: a random token in an HttpOnly, SameSite cookie (Secure behind TLS); the
database keeps only its hash, with the session's CSRF token and when it ends."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from staff.models import sessions

COOKIE = "staff_session"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user_id: int
    csrf_token: str


class Sessions:
    def __init__(self, engine: AsyncEngine, *, lifetime: dt.timedelta,
                 idle: dt.timedelta) -> None:
        self._engine = engine
        self._lifetime = lifetime
        self._idle = idle

    async def open(self, user_id: int, now: dt.datetime) -> str:
        token = secrets.token_urlsafe(32)
        async with self._engine.begin() as conn:
            # Sessions that have ended are cleared as new ones begin.
            await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
            await conn.execute(insert(sessions).values(
                token_hash=_hash(token), user_id=user_id, csrf_token=secrets.token_urlsafe(32),
                created_at=now, last_seen_at=now, expires_at=now + self._lifetime))
        return token

    async def find(self, token: str, now: dt.datetime) -> Session | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(sessions).where(
                sessions.c.token_hash == _hash(token)))).first()
        if row is None or row.expires_at <= now or row.last_seen_at + self._idle <= now:
            return None
        if now - row.last_seen_at > dt.timedelta(minutes=1):
            async with self._engine.begin() as conn:
                await conn.execute(update(sessions).where(
                    sessions.c.token_hash == row.token_hash).values(last_seen_at=now))
        return Session(user_id=row.user_id, csrf_token=row.csrf_token)

    async def close(self, token: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.token_hash == _hash(token)))
