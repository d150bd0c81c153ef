"""The local outbox: with no provider configured, each message is written to a file, clearly
marked as not sent, so a developer can see what the service would have sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

from notifier.providers import OutgoingMessage, ProviderResult

BANNER = "NOT SENT: written to the local outbox because no {provider} is configured."


class OutboxFile:
    def __init__(self, directory: Path, provider: str) -> None:
        self._directory = directory
        self._provider = provider

    def _path(self, message: OutgoingMessage) -> Path:
        return self._directory / f"{message.notification_id}.{message.channel}.txt"

    async def find_sent(self, message: OutgoingMessage) -> ProviderResult | None:
        if self._path(message).exists():
            return ProviderResult(provider_id=f"outbox-{message.notification_id}"[:64])
        return None

    async def send(self, message: OutgoingMessage) -> ProviderResult:
        path = self._path(message)
        lines = [BANNER.format(provider=self._provider), f"Channel: {message.channel}",
                 f"To: {message.to}"]
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        text = "\n".join([*lines, "", message.body, ""])
        await asyncio.to_thread(self._write, path, text)
        return ProviderResult(provider_id=f"outbox-{message.notification_id}"[:64])

    def _write(self, path: Path, text: str) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)

    async def close(self) -> None:
        return None
