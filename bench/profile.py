"""`python -m bench.profile`: py-spy over `python -m triage` on PostgreSQL at quick size.

Writes the 15 heaviest functions (inclusive and own samples) to bench/profile-triage.txt.
Needs py-spy (a dev dependency) and permission to ptrace the child it starts."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import processes, rosters
from bench.__main__ import SIZES, _authority
from bench.generator import LONDON, encode
from bench.infra import Databases, fresh_vhost

OUTPUT = Path(__file__).with_name("profile-triage.txt")
OURS = ("triage/", "servicekit/", "broker_messages/")


def _short(frame: str) -> str:
    """"apply (/srv/app/services/triage/ingest.py:50)" -> "apply (triage/ingest.py:50)"."""
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


def summarise(raw: Path, seconds: float, count: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    # Our own code first: that is what the lead can change; library frames follow below.
    ours = [(f, n) for f, n in inclusive.most_common() if f.split(" (")[0] not in ("<module>", "main", "serve")
            and any(p in f for p in OURS)]
    lines = [(f"py-spy, `python -m triage` on PostgreSQL, {count:,} events in {seconds:.1f} s "
              f"({count / seconds:,.0f}/s); {total:,} non-idle samples"),
             "", "top 15 of our functions by inclusive samples (function (package/file:line)):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in ours[:15]]
    lines += ["", "top 15 by own samples (any code):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(15)]
    return "\n".join(lines) + "\n"


async def profile() -> None:
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not installed: .venv/bin/pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="absence-profile-"))
    raw = workdir / "triage.raw"
    now = dt.datetime.now(dt.UTC)
    authority = _authority("quick", 1, now.astimezone(LONDON).date(),
                           now - dt.timedelta(minutes=50))
    with fresh_vhost() as amqp_url:
        databases = Databases()
        try:
            database = await databases.create()
            await rosters.load(databases.url(database), authority, now)
            run = await processes.triage_processes(
                amqp_url, databases, database, encode(authority.events()), 1, workdir,
                wrapper=(spy, "record", "--format", "raw", "--rate", "250", "-o", str(raw),
                         "--"))
        finally:
            await databases.drop_all()
    OUTPUT.write_text(summarise(raw, run.seconds, run.count))
    print(OUTPUT.read_text())
    print(f"(quick size: {SIZES['quick'][1]:,} pupils)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(profile())
