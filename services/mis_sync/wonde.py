"""The Wonde API as the sync reads it: one school's resources, page by page.

Wonde pages every list and names the next page in `meta.pagination.next` (an absolute URL);
it limits request rates (429, with `Retry-After`) and has bad minutes (5xx). Both are waited
out here with tenacity, honouring `Retry-After` when Wonde sends it; the sleep is injected so
tests never wait. A 401 or 403 for a school means it revoked the app's access (or never
approved it): that is not retried but raised as `SchoolRefused`, for the caller to stop
syncing the school."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from servicekit.clock import Clock
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

Sleep = Callable[[float], Awaitable[None]]
Record = dict[str, Any]

# Wonde's largest page; fewer round trips for a school of a thousand pupils.
PER_PAGE = 200
# Attempts per request when Wonde is rate limiting or failing, and the longest wait between.
ATTEMPTS = 6
MAX_WAIT_SECONDS = 120.0
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class SchoolRefused(Exception):
    """Wonde answered 401 or 403 for this school: access revoked or never approved."""

    def __init__(self, status: int) -> None:
        super().__init__(f"Wonde refused access ({status})")
        self.status = status


class WondeUnavailable(Exception):
    """A response worth trying again: 429, a 5xx, or no answer. `retry_after` is Wonde's
    `Retry-After`, in seconds, when it sent one."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class WondeError(Exception):
    """Any other refusal (400, 404, 422, a body that is not a Wonde page): not retried."""


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds()) if when.tzinfo else None


class WondeClient:
    def __init__(self, base_url: str, token: str, clock: Clock, *, sleep: Sleep = asyncio.sleep,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._origin = urlsplit(self._base)[:2]
        self._clock = clock
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            timeout=TIMEOUT, transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    async def close(self) -> None:
        await self._http.aclose()

    async def pages(self, school_id: str, resource: str,
                    params: dict[str, str] | None = None) -> AsyncIterator[list[Record]]:
        """Each page of `resource` (e.g. `attendance/session`) for one school, following
        `meta.pagination.next` until Wonde names none."""
        url: str | None = f"{self._base}/schools/{school_id}/{resource}"
        query: dict[str, str] | None = {"per_page": str(PER_PAGE), **(params or {})}
        while url is not None:
            body = await self._get(url, query)
            data = body.get("data")
            if not isinstance(data, list):
                raise WondeError(f"{resource}: a page without a data list")
            yield [record for record in data if isinstance(record, dict)]
            url, query = self._next(body), None

    async def first(self, school_id: str, resource: str,
                    params: dict[str, str]) -> list[Record]:
        """The first page only: enough to ask whether anything changed."""
        body = await self._get(f"{self._base}/schools/{school_id}/{resource}",
                               {"per_page": "1", **params})
        data = body.get("data")
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def _next(self, body: dict[str, Any]) -> str | None:
        meta = body.get("meta")
        pagination = meta.get("pagination") if isinstance(meta, dict) else None
        following = pagination.get("next") if isinstance(pagination, dict) else None
        if not following:
            return None
        # The token goes only where it was configured to go.
        if urlsplit(str(following))[:2] != self._origin:
            raise WondeError("meta.pagination.next points away from WONDE_API_BASE")
        return str(following)

    async def _get(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(WondeUnavailable), stop=stop_after_attempt(ATTEMPTS),
            wait=self._wait, sleep=self._sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                return await self._get_once(url, params)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _get_once(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = await self._http.get(url, params=params)
        except httpx.HTTPError as error:
            raise WondeUnavailable(type(error).__name__) from None
        if response.status_code in (401, 403):
            raise SchoolRefused(response.status_code)
        if response.status_code == 429 or response.status_code >= 500:
            raise WondeUnavailable(f"HTTP {response.status_code}", retry_after_seconds(
                response.headers.get("Retry-After"), self._clock.now()))
        if response.status_code != 200:
            raise WondeError(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise WondeError("a response that is not JSON") from None
        if not isinstance(body, dict):
            raise WondeError("a response that is not a JSON object")
        return body

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        """Wonde's `Retry-After` when it gave one, else exponential back-off with jitter."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, WondeUnavailable) and error.retry_after is not None:
            return min(error.retry_after, MAX_WAIT_SECONDS)
        return float(wait_exponential_jitter(initial=1, max=MAX_WAIT_SECONDS)(state))
