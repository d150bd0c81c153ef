"""What every service's HTTP API shares: bearer-token auth and the operations endpoints."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import SecretStr

_bearer = HTTPBearer(auto_error=False)


def set_api_token(app: FastAPI, token: SecretStr | None) -> None:
    """The composition root's half of `require_token`: the one token this app accepts."""
    app.state.api_token = token.get_secret_value() if token else None


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Contract §3: a missing or wrong token gets 401; with no API_TOKEN set, nothing is allowed."""
    expected: str | None = request.app.state.api_token
    if (
        not expected
        or credentials is None
        or credentials.scheme.lower() != "bearer"
        or not secrets.compare_digest(credentials.credentials.encode(), expected.encode())
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authenticated = Depends(require_token)


def operations_router(
    ready: Callable[[], Awaitable[dict[str, bool]]], registry: CollectorRegistry
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, bool]:
        checks = await ready()
        if not all(checks.values()):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return checks

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
