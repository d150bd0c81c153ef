"""Making, listing and revoking a service's API keys: `/api/v1/keys` for an administrator's
key, and `python -m triage keys …` / `python -m notifier keys …` on the host
(docs/contract.md §3 "Keys"). A key is shown once, in the answer that makes it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from servicekit.clock import Clock
from servicekit.keys import KeyProblem, KeyStore, Principal, Scope
from servicekit.web import requires

log = logging.getLogger(__name__)

SchoolUrn = Annotated[str, Field(pattern=r"^[0-9]{6,8}$")]


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    scopes: list[Scope] = Field(min_length=1)
    # None: every school (required for keys:admin).
    schools: list[SchoolUrn] | None = Field(None, min_length=1, max_length=5000)


class Key(BaseModel):
    id: str
    name: str
    scopes: list[str]
    schools: list[str] | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class NewKey(Key):
    key: str = Field(description="The whole key. Shown this once; only its hash is kept.")


def _store(request: Request) -> KeyStore:
    store: KeyStore = request.app.state.key_store
    return store


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


StoreDep = Annotated[KeyStore, Depends(_store)]
ClockDep = Annotated[Clock, Depends(_clock)]
KeysAdmin = Annotated[Principal, Depends(requires(Scope.KEYS_ADMIN))]

keys_router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@keys_router.post("", status_code=201, response_model=NewKey)
async def create_key(body: KeyRequest, admin: KeysAdmin, store: StoreDep,
                     clock: ClockDep) -> NewKey:
    try:
        record, key = await store.create(body.name, body.scopes, body.schools, clock.now())
    except KeyProblem as error:
        raise HTTPException(422, [{"loc": ["body"], "msg": str(error), "type": "key"}]) from error
    log.info("api.keys.created key_id=%s by_key_id=%s", record.id, admin.key_id)
    return NewKey(**record.public(), key=key)


@keys_router.get("", response_model=list[Key])
async def list_keys(admin: KeysAdmin, store: StoreDep) -> list[Key]:
    return [Key(**record.public()) for record in await store.list()]


@keys_router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")],
                     admin: KeysAdmin, store: StoreDep, clock: ClockDep) -> Response:
    if not await store.revoke(key_id, clock.now()):
        raise HTTPException(404, "no such key")
    log.info("api.keys.revoked key_id=%s by_key_id=%s", key_id, admin.key_id)
    return Response(status_code=204)


def _parser(service: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {service} keys",
                                     description=f"Manage {service}'s API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it (shown once)")
    create.add_argument("--name", required=True, help="who the key is for")
    create.add_argument("--scope", action="append", required=True, choices=[str(s) for s in Scope],
                        help="a permission; repeat for more")
    create.add_argument("--school", action="append", metavar="URN",
                        help="a school the key serves; repeat for more; omit for every school")
    commands.add_parser("list", help="list keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


async def key_command(service: str, argv: list[str], store: KeyStore, clock: Clock,
                      prepare: Callable[[], Awaitable[None]]) -> int:
    """`python -m <service> keys create|list|revoke`: prints JSON, one key a line."""
    args = _parser(service).parse_args(argv)
    await prepare()
    if args.command == "create":
        try:
            record, key = await store.create(args.name, args.scope, args.school, clock.now())
        except KeyProblem as error:
            print(f"error: {error}")
            return 2
        print(json.dumps({**record.public(), "key": key}, default=str))
    elif args.command == "list":
        for record in await store.list():
            print(json.dumps(record.public(), default=str))
    elif not await store.revoke(args.key_id, clock.now()):
        print(f"error: no key {args.key_id}")
        return 1
    return 0
