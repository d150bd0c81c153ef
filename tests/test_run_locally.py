"""The README's promise: `python -m triage` and `python -m notifier` start on the embedded
defaults from any working directory, and the demo's messages land in the local outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import clock_offset_to
from tests.stack import SIGNING_KEY

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def services(amqp_url: str, broker: object, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TWILIO_", "SMTP_", "TRIAGE_", "NOTIFIER_", "OUTBOX_"))}
    env.update(AMQP_URL=amqp_url, API_TOKEN="local-demo-token", CONTACT_SIGNING_KEY=SIGNING_KEY,
               TRIAGE_PORT=str(_free_port()), NOTIFIER_PORT=str(_free_port()),
               TRIAGE_SCHEDULER_POLL_SECONDS="0.2", NOTIFIER_DISPATCH_POLL_SECONDS="0.2",
               # A school Monday at 09:40, so texts are not held for quiet hours whenever
               # the suite happens to run; the demo reads the same clock.
               CLOCK_OFFSET_SECONDS=clock_offset_to(
                   dt.datetime(2026, 11, 23, 9, 40, tzinfo=dt.UTC)))
    # Run from a directory that is not the checkout: nothing may be looked up from the CWD.
    processes = [
        subprocess.Popen([sys.executable, "-m", name], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("w"))
        for name in ("triage", "notifier")
    ]
    try:
        yield env
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


async def _ready(url: str, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)  # a child process has no event we can await


async def test_demo_fills_the_outbox_on_embedded_defaults(
    services: dict[str, str], tmp_path: Path
) -> None:
    await _ready(f"http://127.0.0.1:{services['TRIAGE_PORT']}/readyz")
    await _ready(f"http://127.0.0.1:{services['NOTIFIER_PORT']}/readyz")
    demo = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "demo.py"), cwd=tmp_path, env=services,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(demo.communicate(), timeout=60)
    assert demo.returncode == 0, output.decode()
    assert (tmp_path / "var" / "triage.db").exists() and (tmp_path / "var" / "notifier.db").exists()
    files = sorted((tmp_path / "var" / "outbox").glob("*.txt"))
    # Three families contacted (Ada's mark was amended to illness), each by SMS and email.
    assert len(files) == 6, output.decode()
    texts = [path.read_text() for path in files]
    assert all(text.startswith("NOT SENT") for text in texts)
    assert any("Nid yw Tom" in text for text in texts), "Tom's parent asked for Welsh"
    assert not any("Ada" in text for text in texts)
    assert not any("+447700900004" in text for text in texts), "court order: never contacted"
    assert any("+447700900005" in text for text in texts)
