"""Triage and the notifier as real processes (`python -m triage`, `python -m notifier`), for
tests that kill them with SIGKILL and start them again."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    def __init__(self, module: str, env: dict[str, str], workdir: Path) -> None:
        self.module = module
        self.port = free_port()
        self.env = {**env, f"{module.upper()}_PORT": str(self.port)}
        self.workdir = workdir
        self.log_path = workdir / f"{module}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], cwd=self.workdir, env=self.env,
                stdout=subprocess.DEVNULL, stderr=log,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no acks, no commits in flight."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def ready(self, timeout: float = 30.0) -> None:
        async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
            while True:
                assert self.process is not None and self.process.poll() is None, (
                    f"{self.module} exited: see {self.log_path}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)  # a child process offers no event to await

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def clock_offset_to(target: dt.datetime) -> str:
    """CLOCK_OFFSET_SECONDS that puts the services' clock at `target` now."""
    return str((target - dt.datetime.now(dt.UTC)).total_seconds())


def base_environment() -> dict[str, str]:
    """The parent's environment minus anything that would configure the services."""
    prefixes = ("TWILIO_", "SMTP_", "TRIAGE_", "NOTIFIER_", "OUTBOX_", "API_TOKEN", "AMQP_",
                "PUBLIC_BASE_URL", "CLOCK_", "CONTACT_SIGNING_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
