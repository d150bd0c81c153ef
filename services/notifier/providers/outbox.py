"""The local outbox: with no provider configured, each message is written to a file, clearly
marked as not sent, so a developer can see what the service would have sent. The row is
recorded as `written`, never `sent`: the log must not claim a family was told."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from servicekit.private_files import private_directory

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
            return self._result(message)
        return None

    async def send(self, message: OutgoingMessage) -> ProviderResult:
        path = self._path(message)
        lines = [BANNER.format(provider=self._provider), f"Channel: {message.channel}",
                 f"To: {message.to}"]
        if message.sender_name:
            lines.append(f"From: {message.sender_name}")
        if message.reply_to:
            lines.append(f"Reply-To: {message.reply_to}")
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        text = "\n".join([*lines, "", message.body, ""])
        await asyncio.to_thread(self._write, path, text)
        return self._result(message)

    def _result(self, message: OutgoingMessage) -> ProviderResult:
        return ProviderResult(provider_id=f"outbox-{message.notification_id}"[:64],
                              status="written")

    def _write(self, path: Path, text: str) -> None:
        # The messages name pupils and carry families' numbers: 0700 and 0600.
        private_directory(self._directory)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(text)
        temporary.replace(path)

    async def close(self) -> None:
        return None
