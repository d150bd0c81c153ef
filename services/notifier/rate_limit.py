"""Per-sender rate limiting: a token bucket that waits, never drops.

Time comes from a `Timer`, so a test can drive it on virtual time and prove the rate exactly.
Each caller reserves the next free slot under a lock, so concurrent senders queue in order."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Timer(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


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
