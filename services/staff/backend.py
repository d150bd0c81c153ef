"""The two services as this app sees them: their HTTP APIs, called with the app's keys
(docs/contract.md §2-§4). Nothing here reads another service's database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import httpx

# A person waits for a page; a service that does not answer in this long is reported as down.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class ServiceError(RuntimeError):
    """A service could not be reached or refused the app's own request."""


class NotFound(LookupError):
    pass


class Rejected(ValueError):
    """The service refused what a person asked for (422 or 409); `problems` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _problems(response: httpx.Response) -> list[str]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return [response.text[:200]]
    if isinstance(detail, list):
        return [str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                for item in detail]
    return [str(detail)]


class Service:
    def __init__(self, name: str, base_url: str, key: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/api/v1", timeout=TIMEOUT, transport=transport,
            headers={"Authorization": f"Bearer {key}"})

    async def close(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, path: str, *, params: Any = None,
                   json: Any = None) -> Any:
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except httpx.HTTPError as error:
            raise ServiceError(f"{self.name} did not answer: {type(error).__name__}") from None
        if response.status_code == 404:
            raise NotFound(path)
        if response.status_code in (409, 422):
            raise Rejected(_problems(response))
        if response.status_code >= 400:
            raise ServiceError(f"{self.name} answered {response.status_code}")
        return response.json() if response.content else None


class Backend:
    """Triage (marks, rules, tasks, rosters) and the notifier (messages and replies)."""

    def __init__(self, triage: Service, notifier: Service) -> None:
        self.triage = triage
        self.notifier = notifier

    async def close(self) -> None:
        await self.triage.close()
        await self.notifier.close()

    # Triage
    async def absences(self, urn: str, date: dt.date | None) -> dict[str, Any]:
        params = {"date": date.isoformat()} if date else None
        result: dict[str, Any] = await self.triage.call(
            "GET", f"/schools/{urn}/absences", params=params)
        return result

    async def attendance(self, schools: Sequence[str] | None, which: str,
                         year_group: int | None) -> dict[str, Any]:
        # The whole list (the screen pages it, the CSV carries it all), up to triage's cap.
        params: list[tuple[str, str | int]] = [("list", which), ("limit", 50_000)]
        params += [("school_urn", urn) for urn in schools or ()]
        if year_group is not None:
            params.append(("year_group", year_group))
        result: dict[str, Any] = await self.triage.call("GET", "/attendance", params=params)
        return result

    async def pupil(self, urn: str, pupil_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.triage.call(
            "GET", f"/pupils/{pupil_id}", params={"school_urn": urn})
        return result

    async def timeline(self, urn: str, pupil_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.triage.call(
            "GET", f"/pupils/{pupil_id}/timeline", params={"school_urn": urn})
        return result

    async def allocated(self, email: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.triage.call(
            "GET", "/pupils", params={"social_worker_email": email})
        return result

    async def record_mark(self, event: dict[str, Any]) -> None:
        await self.triage.call("POST", "/events", json=event)

    async def contact_made(self, urn: str, pupil_id: str, by: str, note: str | None) -> None:
        await self.triage.call("POST", f"/pupils/{pupil_id}/contact-made",
                               params={"school_urn": urn}, json={"by": by, "note": note})

    async def explanations(self, urn: str, status: str = "pending") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.triage.call(
            "GET", f"/schools/{urn}/explanations", params={"status": status})
        return result

    async def accept_explanation(self, urn: str, explanation_id: int, code: str,
                                 by: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.triage.call(
            "POST", f"/schools/{urn}/explanations/{explanation_id}/accept",
            json={"code": code, "by": by})
        return result

    async def dismiss_explanation(self, urn: str, explanation_id: int,
                                  by: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.triage.call(
            "POST", f"/schools/{urn}/explanations/{explanation_id}/dismiss", json={"by": by})
        return result

    async def tasks(self, urn: str, status: str | None = "open") -> list[dict[str, Any]]:
        params = {"school_urn": urn, **({"status": status} if status else {})}
        result: list[dict[str, Any]] = await self.triage.call("GET", "/tasks", params=params)
        return result

    async def assign_task(self, task_id: int, assignee: str) -> None:
        await self.triage.call("POST", f"/tasks/{task_id}/assign", json={"assignee": assignee})

    async def complete_task(self, task_id: int, result: str | None, outcome: str) -> None:
        body = {"outcome": outcome, **({"result": result} if result else {})}
        await self.triage.call("POST", f"/tasks/{task_id}/complete", json=body)

    # Notifier
    async def notifications(self, urn: str, *, since: dt.datetime | None = None,
                            pupil_id: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.notifier.call(
            "GET", "/notifications", params=_of_school(urn, since, pupil_id))
        return result

    async def replies(self, urn: str, *, since: dt.datetime | None = None,
                      pupil_id: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.notifier.call(
            "GET", "/replies", params=_of_school(urn, since, pupil_id))
        return result


def _of_school(urn: str, since: dt.datetime | None, pupil_id: str | None) -> dict[str, str]:
    """The notifier's list filters: one school, from a time, for one pupil."""
    params = {"school_urn": urn}
    if since is not None:
        params["since"] = since.isoformat()
    if pupil_id is not None:
        params["pupil_id"] = pupil_id
    return params
