"""People's accounts: Argon2id password hashes (argon2-cffi), and a wait that doubles after
repeated failed sign-ins so a password cannot be guessed online."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from staff.access import Role, User
from staff.models import users

MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
# Verified against when the address is unknown, so an answer takes as long either way.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class AccountProblem(ValueError):
    pass


def normal_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise AccountProblem(f"not a valid email address: {error}") from None


def _user(row: Any) -> User:
    schools = None if row.schools is None else frozenset(row.schools)
    return User(id=row.id, email=row.email, name=row.name, role=Role(row.role), schools=schools)


class Accounts:
    def __init__(self, engine: AsyncEngine, *, max_failures: int,
                 lockout: dt.timedelta) -> None:
        self._engine = engine
        self._max_failures = max_failures
        self._lockout = lockout

    async def create(self, *, email: str, name: str, role: Role, password: str,
                     schools: Collection[str] | None, now: dt.datetime) -> User:
        problems = []
        if len(password) < MIN_PASSWORD_LENGTH:
            problems.append(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
        if not name.strip():
            problems.append("a name is needed")
        if role not in (Role.ADMIN, Role.SOCIAL_WORKER) and not schools:
            problems.append(f"a {role.value} needs at least one school")
        try:
            address = normal_email(email)
        except AccountProblem as error:
            problems.append(str(error))
        if problems:
            raise AccountProblem("; ".join(problems))
        digest = await asyncio.to_thread(_hasher.hash, password)
        async with self._engine.begin() as conn:
            if (await conn.execute(select(users.c.id).where(users.c.email == address))).first():
                raise AccountProblem(f"an account for {address} exists already")
            user_id = (await conn.execute(insert(users).values(
                email=address, name=name.strip(), role=role.value,
                schools=None if schools is None or role is Role.ADMIN else sorted(schools),
                password_hash=digest, failed_logins=0, created_at=now,
            ).returning(users.c.id))).scalar_one()
        user = await self.get(user_id)
        assert user is not None
        return user

    async def get(self, user_id: int) -> User | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(users).where(
                users.c.id == user_id, users.c.disabled_at.is_(None)))).first()
        return None if row is None else _user(row)

    async def sign_in(self, email: str, password: str, now: dt.datetime) -> User | None:
        """The person, or None for a wrong address or password or an account that must
        wait; the caller says the same thing in each case."""
        try:
            address = normal_email(email)
        except AccountProblem:
            address = ""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(users).where(
                users.c.email == address, users.c.disabled_at.is_(None)))).first()
        if row is None:
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            return None
        if row.locked_until is not None and row.locked_until > now:
            return None
        if await asyncio.to_thread(_verify, row.password_hash, password):
            async with self._engine.begin() as conn:
                await conn.execute(update(users).where(users.c.id == row.id)
                                   .values(failed_logins=0, locked_until=None))
            return _user(row)
        failures = row.failed_logins + 1
        locked_until = None
        if failures >= self._max_failures:
            locked_until = now + self._lockout * 2 ** min(failures - self._max_failures, 8)
        async with self._engine.begin() as conn:
            await conn.execute(update(users).where(users.c.id == row.id)
                               .values(failed_logins=failures, locked_until=locked_until))
        return None


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False
