"""Each service's API description (`/openapi.json`) and its pages (`/docs`, `/redoc`).

Some routes read their body themselves, to list every problem of a document at once
(triage's `PUT /api/v1/schools/{urn}` and `POST /api/v1/events`); their body is described by
`request_body`. Pydantic puts the models such a schema refers to under its own `$defs`, which
an OpenAPI document does not resolve: `service_app` moves them to `components.schemas`, where
the refs (`REF_TEMPLATE`) point, so a client generator finds every one. The pages load Swagger
UI and ReDoc from the service itself (fastapi-offline ships them), so they work on a network
without the internet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import TypeAdapter

REF_TEMPLATE = "#/components/schemas/{model}"


def request_body(adapter: TypeAdapter[Any], media_type: str = "application/json",
                 description: str | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself: the body is `adapter`'s type."""
    body: dict[str, Any] = {"required": True, "content": {
        media_type: {"schema": adapter.json_schema(ref_template=REF_TEMPLATE)}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def service_app(title: str, version: str) -> FastAPI:
    """A service's FastAPI app: local documentation pages, and a description whose every
    `$ref` resolves."""
    app = FastAPIOffline(title=title, version=version)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return hoist_defs(generate())

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
    return app


def hoist_defs(spec: dict[str, Any]) -> dict[str, Any]:
    """Move every `$defs` under `paths` into `components.schemas` (in place, so the cached
    description is fixed once). Two different schemas under one name are a bug: refused."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for holder in _holders_of_defs(spec.get("paths", {})):
        for name, schema in holder.pop("$defs").items():
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"two different schemas are called {name}")
    return spec


def _holders_of_defs(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "$defs" in node:
            yield node
        for value in list(node.values()):
            yield from _holders_of_defs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _holders_of_defs(value)
