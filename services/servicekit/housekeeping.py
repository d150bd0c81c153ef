"""Retention (docs/security.md "Retention"): a service's housekeeping pass deletes the rows each
of its stores keeps no longer, in bounded batches so that no transaction holds a large table
for long, and logs how many went (counts only: no personal data).

A service lists its purges as a function of `now` (its clock), so a test runs a pass at any
time it sets and never waits for the hourly loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.clock import Clock

log = logging.getLogger(__name__)

# One pass an hour: retention is counted in days, and a pass is cheap when nothing is due.
PASS_INTERVAL_SECONDS = 3600.0
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Purge:
    """Rows of `table` matching `expired` go; `key` names them for the bounded batches."""

    name: str
    table: Table
    key: Any  # a column that tells rows apart (with `expired`, applied again on delete)
    expired: ColumnElement[bool]


async def purge(engine: AsyncEngine, target: Purge, batch_size: int = BATCH_SIZE) -> int:
    """Delete every expired row, at most `batch_size` per transaction; returns how many."""
    total = 0
    while True:
        batch = select(target.key).where(target.expired).limit(batch_size).scalar_subquery()
        async with engine.begin() as conn:
            result = await conn.execute(
                delete(target.table).where(target.expired, target.key.in_(batch)))
        total += result.rowcount
        if result.rowcount < batch_size:
            return total


class Housekeeping:
    """Runs a service's purges, and anything else its pass includes (`extra`), once an hour."""

    def __init__(self, name: str, engine: AsyncEngine, clock: Clock,
                 purges: Callable[[dt.datetime], Sequence[Purge]],
                 extra: Sequence[Callable[[dt.datetime], Any]] = (),
                 batch_size: int = BATCH_SIZE) -> None:
        self._name = name
        self._engine = engine
        self._clock = clock
        self._purges = purges
        self._extra = extra
        self._batch_size = batch_size

    async def run_once(self) -> dict[str, int]:
        """One pass at the clock's time: rows purged per store."""
        now = self._clock.now()
        for step in self._extra:
            await step(now)
        counts = {target.name: await purge(self._engine, target, self._batch_size)
                  for target in self._purges(now)}
        log.info("%s.housekeeping.purged %s", self._name,
                 " ".join(f"{name}={n}" for name, n in counts.items()))
        return counts

    async def run(self, interval_seconds: float = PASS_INTERVAL_SECONDS) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Database away: the next pass tries again.
                log.exception("%s.housekeeping.failed", self._name)
            await asyncio.sleep(interval_seconds)
