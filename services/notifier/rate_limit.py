"""Per-sender rate limiting that waits, never drops: a token bucket within one process, and
a limit every replica shares through the database.

Time comes from a `Timer`, so a test can drive it on virtual time and prove the rate exactly.
Each caller reserves the next free slot under a lock, so concurrent senders queue in order.

The provider counts per sender, whoever sends: with a bucket each, two replicas sent at twice
the configured rate. `SharedRateLimit` keeps the next free slot of each channel in one row
(`rate_slots`, virtual scheduling as in GCRA). A replica reserves a few slots at a time, only
as many as it has sends waiting and at most a tenth of a second's worth, in one conditional
upsert, then waits locally until each. The row's lock serialises replicas; on PostgreSQL "now"
is the database server's, so replicas on different machines agree. A slot not used in time is
lost, never reused: the limit can be undershot, not exceeded.

Measured (bench, 100/s, two and four `python -m notifier` processes): waiting for the slot
before the send guard put the guard's transaction, whose time varies with load, between the
slot and the provider call, and the replicas' texts crowded into the same seconds (121 and 128
in one second). So the slot is reserved first, the guard committed, and only then is the slot
waited for: the provider call follows its slot by the event loop's delay alone."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Protocol

from servicekit.database import dialect_insert
from sqlalchemy import ColumnElement, Float, cast, func, literal
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.models import rate_slots


class Timer(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Limiter(Protocol):
    """A send takes its turn in two steps: `reserve` waits in the queue and returns the time
    of its slot; `wait_for` waits until that slot and says whether it was still good (False:
    too late, the slot is lost and another must be reserved). Between the two the dispatcher
    commits its send guard, so the guard's own time does not move the send off its slot."""

    rate: float

    async def reserve(self, *, first: bool = False) -> float: ...

    async def wait_for(self, slot: float) -> bool: ...


class LoopTimer:
    """The event loop's monotonic clock."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TokenBucket:
    """At most `rate` grants per second, in bursts of at most `burst`.

    With the default burst of 1 grants are spaced 1/rate apart, so no one-second window ever
    holds more than `rate` of them (providers measure per second, not on average)."""

    def __init__(self, rate: float, timer: Timer, burst: int = 1) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self._interval = 1.0 / rate
        self._burst = burst
        self._timer = timer
        # The earliest time at which a full bucket would be empty again ("virtual scheduling").
        self._theoretical: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a token; returns the timer's time at which it was granted."""
        async with self._lock:
            now = self._timer.monotonic()
            theoretical = now if self._theoretical is None else self._theoretical
            earliest = max(now, theoretical - (self._burst - 1) * self._interval)
            self._theoretical = max(theoretical, earliest) + self._interval
            # Sleeping under the lock keeps grants in arrival order: nobody overtakes.
            if earliest > now:
                await self._timer.sleep(earliest - now)
            return earliest

    async def reserve(self, *, first: bool = False) -> float:
        """Waits for the token itself, so its slot is always good: a bucket is one process's
        limit (the service shares `SharedRateLimit`; tests drive buckets on virtual time)."""
        return await self.acquire()

    async def wait_for(self, slot: float) -> bool:
        return True


# How late a slot may still be used. At 2 ms most slots were lost on a loaded machine, each
# loss costing another reservation: the unlimited run fell to x0.07 of the naive loop in the
# same run (x0.19 at 10 ms, bench-quick at a load average of 8-10, so only a rough guide).
LATENESS_SECONDS = 0.01
# How far ahead one reservation reaches, in seconds of the rate: a tenth of a second keeps
# reservations few (ten a second at 100/s) and slots lost to a stopping replica fewer.
RESERVE_SECONDS = 0.1


class SharedRateLimit:
    """At most `rate` grants per second on one channel across every replica sharing
    `engine`'s database, spaced 1/rate apart (burst 1).

    Each reservation's slots are handed at once to the callers waiting, in arrival order, and
    each caller then waits for its own: a slot is never held in a queue where it could go
    stale. A caller that gives up before its slot leaves that slot unused.

    On SQLite the timer's clock is the shared "now": the loop's monotonic clock is the same
    for every process on one machine, the only place one SQLite file is shared."""

    def __init__(self, engine: AsyncEngine, channel: str, rate: float, timer: Timer) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._engine = engine
        self._channel = channel
        self._interval = 1.0 / rate
        self._timer = timer
        self._most = max(1, math.floor(rate * RESERVE_SECONDS))
        # Slots used up to this late add at most 1% of the rate to any one second: the 1% the
        # service paces under (notifier.app.PACING).
        self._lateness = LATENESS_SECONDS
        self._waiting: deque[asyncio.Future[float]] = deque()
        self._reserved_until = -math.inf
        self._reserver: asyncio.Task[None] | None = None

    async def acquire(self) -> float:
        """Wait for a good slot; returns the timer's time it was reserved for."""
        slot = await self.reserve()
        while not await self.wait_for(slot):
            slot = await self.reserve(first=True)
        return slot

    async def reserve(self, *, first: bool = False) -> float:
        """Wait for a slot of this channel; returns its time on the timer's clock (at most a
        tenth of a second or so ahead: reservations never run further ahead). `first`: ahead
        of the queue, for a send whose guard has committed and whose slot was lost, so that
        the time between its guard and its provider call stays short."""
        slot: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if first:
            self._waiting.appendleft(slot)
        else:
            self._waiting.append(slot)
        if self._reserver is None or self._reserver.done():
            self._reserver = asyncio.ensure_future(self._reserve_for_waiting())
        return await slot

    async def wait_for(self, slot: float) -> bool:
        """Wait until `slot`; False when that is later than the lateness allowed: used now it
        would crowd the slots after it, perhaps another replica's."""
        now = self._timer.monotonic()
        if slot > now:
            await self._timer.sleep(slot - now)
            # A process starved of CPU wakes late too: then its slot is as good as lost.
            now = self._timer.monotonic()
        return now <= slot + self._lateness

    async def _reserve_for_waiting(self) -> None:
        try:
            while self._waiting:
                ahead = (self._reserved_until - self._timer.monotonic()
                         - self._most * self._interval)
                if ahead > 0:  # a reservation's worth still ahead: never run further ahead
                    await self._timer.sleep(ahead)
                    continue
                slots = await self._reserve(min(len(self._waiting), self._most))
                self._reserved_until = slots[-1]
                for slot in slots:
                    if not self._waiting:
                        break  # its caller gave up meanwhile: the slot goes unused
                    waiter = self._waiting.popleft()
                    if not waiter.done():
                        waiter.set_result(slot)
        except Exception as error:  # noqa: BLE001 - every waiter hears of it
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    async def _reserve(self, count: int) -> list[float]:
        """`count` consecutive slots from the shared row, as times on the timer's clock."""
        span = count * self._interval
        async with self._engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            now: ColumnElement[float] = (
                cast(func.extract("epoch", func.clock_timestamp()), Float) if postgres
                else literal(self._timer.monotonic(), Float))
            upsert = dialect_insert(self._engine)(rate_slots).values(
                channel=self._channel, next_at=now + span)
            row = (await conn.execute(upsert.on_conflict_do_update(
                index_elements=[rate_slots.c.channel],
                set_={"next_at": (func.greatest if postgres else func.max)(
                    rate_slots.c.next_at, now) + span},
            ).returning(rate_slots.c.next_at, now.label("now")))).one()
            # The server's times, moved onto this process's clock as soon as they are known.
            offset = self._timer.monotonic() - float(row.now) if postgres else 0.0
        first = float(row.next_at) - span + offset
        return [first + n * self._interval for n in range(count)]
