"""`python -m bench.profile`: py-spy over `python -m triage` on PostgreSQL at quick size.

Writes the 15 heaviest functions (inclusive and own samples) to bench/profile-triage.txt.
`python -m bench.profile --deployed [--sqlite]`: py-spy over both services during the
as-deployed morning (bench.as_deployed, full size), one summary per service in
bench/profile-deployed-postgresql.txt (or -sqlite.txt). Needs py-spy (a dev dependency) and permission to ptrace the
children it starts."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import as_deployed, processes, rosters
from bench.__main__ import SIZES, _authority
from bench.generator import LONDON, encode
from bench.infra import Databases, fresh_vhost
from tests.fakes.twilio_stub import TwilioStub

OUTPUT = Path(__file__).with_name("profile-triage.txt")
OURS = ("triage/", "servicekit/", "broker_messages/", "notifier/")


def _short(frame: str) -> str:
    """"apply (/srv/app/services/triage/ingest.py:50)" -> "apply (triage/ingest.py:50)"."""
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


def summarise(raw: Path, seconds: float, count: int,
              what: str = "`python -m triage` on PostgreSQL") -> str:
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
    lines = [(f"py-spy, {what}, {count:,} events in {seconds:.1f} s "
              f"({count / seconds:,.0f}/s); {total:,} non-idle samples"),
             "", "top 15 of our functions by inclusive samples (function (package/file:line)):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in ours[:15]]
    lines += ["", "top 15 by own samples (any code):"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(15)]
    return "\n".join(lines) + "\n"


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not installed: .venv/bin/pip install py-spy")
    return spy


async def profile() -> None:
    spy = _py_spy()
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


async def profile_deployed(database: str) -> None:
    """Both services under py-spy through one as-deployed morning (full size)."""
    spy = _py_spy()
    workdir = Path(tempfile.mkdtemp(prefix="absence-profile-"))
    morning_of = as_deployed.authority("full")
    with fresh_vhost() as amqp_url:
        databases = Databases()
        try:
            async with TwilioStub() as stub:
                urls, notifier_url = (
                    await as_deployed.sqlite_urls(workdir, morning_of) if database == "SQLite"
                    else await as_deployed.postgres_urls(databases, morning_of))
                run = await as_deployed.morning(amqp_url, stub, workdir, urls, notifier_url,
                                                morning_of, spy=spy)
        finally:
            await databases.drop_all()
    verdict = "OK" if run.check.ok and not run.dead else "FAILED"
    summaries = [(f"as deployed on {database}: {run.sms:,} SMS, last at the provider "
                  f"{run.seconds:.1f} s after the first mark was published; checks {verdict}"),
                 ""]
    summaries += [summarise(workdir / f"{service}.raw", run.seconds, run.marks,
                            f"`python -m {service}` on {database}")
                  for service in ("triage", "notifier")]
    output = Path(__file__).with_name(f"profile-deployed-{database.lower()}.txt")
    output.write_text("\n".join(summaries))
    print(output.read_text())
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--deployed", action="store_true",
                        help="both services through the as-deployed morning")
    parser.add_argument("--sqlite", action="store_true", help="with --deployed: on SQLite")
    args = parser.parse_args()
    if args.deployed:
        asyncio.run(profile_deployed("SQLite" if args.sqlite else "PostgreSQL"))
    else:
        asyncio.run(profile())


if __name__ == "__main__":
    main()
