"""What every service's HTTP API shares: bearer-key auth (servicekit.keys), scope and school
checks, and the operations endpoints."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import SecretStr

from servicekit.clock import Clock
from servicekit.keys import ADMIN, KeyStore, Principal, Scope

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False)


def install_keys(app: FastAPI, token: SecretStr | None, store: KeyStore, clock: Clock) -> None:
    """The composition root's half of `authenticate`: the administrator's token (API_TOKEN)
    and the service's own keys."""
    app.state.api_token = token.get_secret_value() if token else None
    app.state.key_store = store
    app.state.clock = clock


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Contract §3: a missing, wrong or revoked key gets 401. API_TOKEN is the administrator's
    key; with it unset, only the service's own keys are accepted. Each use is logged with the
    key's id, never the key."""
    presented = (credentials.credentials if credentials is not None
                 and credentials.scheme.lower() == "bearer" else "")
    expected: str | None = request.app.state.api_token
    principal: Principal | None = None
    if presented and expected and secrets.compare_digest(presented.encode(), expected.encode()):
        principal = ADMIN
    elif presented:
        store: KeyStore = request.app.state.key_store
        principal = await store.principal(presented)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal
    log.info("api.request key_id=%s method=%s path=%s", principal.key_id, request.method,
             request.url.path)
    return principal


Authenticated = Depends(authenticate)
PrincipalDep = Annotated[Principal, Depends(authenticate)]


def requires(scope: Scope) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if their key has `scope`; 403 otherwise."""
    def check(principal: PrincipalDep) -> Principal:
        if not principal.can(scope):
            log.info("api.forbidden key_id=%s scope=%s", principal.key_id, scope)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key lacks the {scope} scope")
        return principal
    return check


def ensure_school(principal: Principal, school_urn: str) -> None:
    """403 when a request names a school the key does not serve. The answer depends on the key
    alone, never on whether the school exists, so it reveals nothing about other schools
    (docs/security.md "Keys and permissions")."""
    if not principal.serves(school_urn):
        log.info("api.forbidden key_id=%s school_urn=%s", principal.key_id, school_urn)
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this key does not serve school {school_urn}")


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
