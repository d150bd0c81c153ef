"""Channel providers behind one interface: `send(message) -> ProviderResult`.

Each provider raises `ProviderError` classified by `errors.classify`; the single retry layer
(tenacity, in `notifier.dispatch`) decides what to retry from that classification alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    notification_id: str
    channel: str
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    language: str = "en"
    # Email: `From` shows this name (the school's) and replies go to `reply_to`.
    sender_name: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class ProviderResult:
    provider_id: str
    # "written": the local outbox kept it in a file, nothing left the machine.
    status: Literal["sent", "written"] = "sent"


class ProviderError(Exception):
    def __init__(self, message: str, *, retryable: bool, code: str | None = None,
                 ambiguous: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        # The request may have reached the provider (a time-out or a dropped answer): look
        # before sending again.
        self.ambiguous = ambiguous


class Provider(Protocol):
    async def send(self, message: OutgoingMessage) -> ProviderResult: ...

    async def find_sent(self, message: OutgoingMessage) -> ProviderResult | None:
        """The provider's record of `message` if it was already accepted, where the provider
        can be asked (after a crash between its acceptance and our commit); else None."""
        ...

    async def close(self) -> None: ...
