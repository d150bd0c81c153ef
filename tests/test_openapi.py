"""docs/contract.md §6 "API descriptions": both services' `/openapi.json` is a valid OpenAPI
document a client generator accepts (checked by openapi-spec-validator), every `$ref` in it
resolves, every operation that takes a body describes it, and `/docs` and `/redoc` load
nothing from outside the service."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from openapi_spec_validator import validate
from triage.app import TriageService
from triage.app import create_app as triage_app
from triage.settings import TriageSettings

# Every operation that takes a body, so the walk below cannot silently find none.
KNOWN_BODIES = {
    ("triage", "put", "/api/v1/schools/{urn}"),
    ("triage", "post", "/api/v1/events"),
    ("notifier", "post", "/twilio/status"),
    ("notifier", "post", "/twilio/inbound"),
}
# What a page loads: attributes (`src`, `href`, ReDoc's `spec-url`) and Swagger UI's `url: '…'`.
_ASSET = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Both apps, without a broker: the descriptions and pages need no storage either."""
    triage = TriageService(TriageSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    notifier = NotifierService(NotifierSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/n.db"))
    apps = {"triage": triage_app(triage), "notifier": notifier_app(notifier)}
    try:
        async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=apps["triage"]),
                                      base_url="http://triage.test") as triage_client,
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=apps["notifier"]),
                                      base_url="http://notifier.test") as notifier_client):
            yield {"triage": triage_client, "notifier": notifier_client}
    finally:
        await triage.engine.dispose()
        await notifier.engine.dispose()


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "mapping" and isinstance(value, dict):  # a discriminator's refs
                yield from (ref for ref in value.values() if isinstance(ref, str))
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(spec: dict[str, Any], ref: str) -> object:
    """A local JSON pointer (`#/components/schemas/Task`); KeyError when it points nowhere."""
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_both_descriptions_are_valid_and_every_ref_resolves(
        clients: dict[str, httpx.AsyncClient]) -> None:
    bodies = set()
    for name, client in clients.items():
        spec = (await client.get("/openapi.json")).json()
        validate(spec)
        refs = set(_refs(spec))
        assert refs, name
        for ref in refs:
            _resolve(spec, ref)
        assert "$defs" not in str(spec), f"{name}: a schema's $defs left out of components"
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if method in ("post", "put", "patch") and "requestBody" in operation:
                    bodies.add((name, method, path))
                    assert operation["requestBody"]["content"], (name, method, path)
    assert KNOWN_BODIES <= bodies


async def test_the_events_body_is_one_event_or_an_array(
        clients: dict[str, httpx.AsyncClient]) -> None:
    spec = (await clients["triage"].get("/openapi.json")).json()
    body = spec["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]
    one, many = body["application/json"]["schema"]["anyOf"]
    assert many["type"] == "array" and many["maxItems"] == 1000 and many["items"] == one
    assert one["discriminator"]["propertyName"] == "schema"
    assert {_resolve(spec, ref)["title"] for ref in one["discriminator"]["mapping"].values()  # type: ignore[index]
            } == {"RegisterMark", "PupilRemoved"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_pages_load_only_the_services_own_files(
        clients: dict[str, httpx.AsyncClient], page: str) -> None:
    for client in clients.values():
        html = (await client.get(page)).text
        assert "http://" not in html and "https://" not in html, html
        assets = {first or second for first, second in _ASSET.findall(html)}
        assert "/openapi.json" in assets and len(assets) >= 2, assets
        for asset in assets:
            response = await client.get(urljoin(page, asset))
            assert response.status_code == 200, asset
            assert response.content, asset
