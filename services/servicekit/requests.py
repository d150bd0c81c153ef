"""Reading JSON request bodies defensively: a size cap before parsing, and errors in the same
shape FastAPI uses for its own validation errors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request, status
from pydantic import ValidationError

MAX_BODY_BYTES = 8 * 1024 * 1024


async def read_json(request: Request, max_bytes: int = MAX_BODY_BYTES) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "request body too large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "request body too large")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise HTTPException(
            422,
            [{"loc": ["body"], "msg": f"invalid JSON: {error}"[:300], "type": "json_invalid"}],
        ) from None


def validation_problems(error: ValidationError, prefix: list[str | int]) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *problem["loc"]], "msg": problem["msg"], "type": problem["type"]}
        for problem in error.errors(include_url=False, include_input=False)
    ]
