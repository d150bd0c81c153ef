"""The README's promise: `python -m triage`, `python -m notifier` and `python -m staff` start
on the embedded defaults from any working directory, the demo's messages land in the local
outbox, and a demo account signs in to the staff web app."""

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


def _clean_environment() -> dict[str, str]:
    """The caller's environment without anything that configures a service."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(("TWILIO_", "SMTP_", "TRIAGE_", "NOTIFIER_", "OUTBOX_",
                                   "STAFF_", "PUBLIC_BASE_URL"))}


@pytest.fixture
def services(amqp_url: str, broker: object, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = _clean_environment()
    env.update(AMQP_URL=amqp_url, API_TOKEN="local-demo-token", CONTACT_SIGNING_KEY=SIGNING_KEY,
               # As `make run` sets it: an auth token without an account SID signs the demo's
               # parent reply and leaves texts in the outbox.
               TWILIO_AUTH_TOKEN="local-twilio-auth-token",
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


async def _demo(env: dict[str, str], cwd: Path) -> str:
    demo = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "demo.py"), cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(demo.communicate(), timeout=60)
    assert demo.returncode == 0, output.decode()
    return output.decode()


async def test_demo_fills_the_outbox_on_embedded_defaults(
    services: dict[str, str], tmp_path: Path
) -> None:
    await _ready(f"http://127.0.0.1:{services['TRIAGE_PORT']}/readyz")
    await _ready(f"http://127.0.0.1:{services['NOTIFIER_PORT']}/readyz")
    output = await _demo(services, tmp_path)
    assert (tmp_path / "var" / "triage.db").exists() and (tmp_path / "var" / "notifier.db").exists()
    files = sorted((tmp_path / "var" / "outbox").glob("*.txt"))
    # Running it again the same morning publishes duplicates and replays the reply: no change.
    await _demo(services, tmp_path)
    assert sorted((tmp_path / "var" / "outbox").glob("*.txt")) == files
    texts = [path.read_text() for path in files]
    assert texts and all(text.startswith("NOT SENT") for text in texts)
    assert any("Nid yw Osian" in text for text in texts), "Osian's parent asked for Welsh"
    assert not any("Ravi" in text for text in texts), "amended to illness: nobody contacted"
    assert not any("+447700900004" in text for text in texts), "court order: never contacted"
    assert any("+447700900005" in text for text in texts)
    assert any("To: virtual.school@county.example" in text for text in texts)
    assert any("To: social.worker@demo.example" in text for text in texts)
    triage = f"http://127.0.0.1:{services['TRIAGE_PORT']}/api/v1"
    notifier = f"http://127.0.0.1:{services['NOTIFIER_PORT']}/api/v1"
    async with httpx.AsyncClient(headers={"Authorization": "Bearer local-demo-token"}) as client:
        first_day = (await client.get(f"{notifier}/notifications", params={
            "school_urn": "100001", "rule": "first_day_contact"})).json()
        replies = (await client.get(f"{notifier}/replies",
                                    params={"school_urn": "100001"})).json()
        tasks = (await client.get(f"{triage}/tasks", params={"school_urn": "100001"})).json()
    # This morning's unexplained absences, but not the pupil away since two days ago.
    family_texts = [n for n in first_day if n["recipient_role"] == "parent"
                    and n["channel"] == "sms"]
    assert sorted(p for n in family_texts for p in n["pupil_ids"]) == [
        "D001", "D002", "D004", "D005", "D006"], output
    assert all(n["status"] == "written" for n in family_texts), "no provider: nothing was sent"
    # The demo's signed reply reached the notifier and was matched to Amelia's family.
    assert [(r["matched"], r["pupil_ids"]) for r in replies] == [(True, ["D001"])], output
    assert any(t["kind"] == "home_visit" and t["pupil_id"] == "D007" for t in tasks)


@pytest.fixture
def staff_app(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The staff web app alone, as `make run` starts it: signing in needs neither service."""
    env = _clean_environment()
    env.update(API_TOKEN="local-demo-token", STAFF_PORT=str(_free_port()),
               STAFF_TRIAGE_URL=f"http://127.0.0.1:{_free_port()}",
               STAFF_NOTIFIER_URL=f"http://127.0.0.1:{_free_port()}")
    made = subprocess.run(
        [sys.executable, "-m", "staff", "users", "add", "--email", "officer@demo.example",
         "--name", "Demo Attendance Officer", "--role", "attendance_officer",
         "--school", "100001", "--password-stdin"],
        cwd=tmp_path, env=env, input="a demo password\n", capture_output=True, text=True,
        timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert "made account" in made.stdout
    process = subprocess.Popen([sys.executable, "-m", "staff"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL,
                               stderr=(tmp_path / "staff.log").open("w"))
    try:
        yield env
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_staff_app_signs_a_demo_account_in(staff_app: dict[str, str],
                                                 tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{staff_app['STAFF_PORT']}"
    await _ready(f"{base}/login")
    assert (tmp_path / "var" / "staff.sqlite3").exists()
    async with httpx.AsyncClient(base_url=base, follow_redirects=True) as client:
        page = await client.get("/login")
        response = await client.post("/login", data={"email": "officer@demo.example",
                                                     "password": "a demo password"})
    assert page.status_code == 200 and 'name="password"' in page.text
    # The officer of one school lands on its Today page (which needs triage, not running here).
    assert [r.status_code for r in response.history] == [303]
    assert response.url.path == "/schools/100001/today"
