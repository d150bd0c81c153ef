"""A PostgreSQL primary and a streaming standby of our own, for tests that kill the primary.

The shared server on this machine is never touched: both servers run from Debian's PostgreSQL
binaries as the `postgres` user (the tests run as root, and PostgreSQL refuses to), with their
data directories in a temporary directory, on free ports, listening on 127.0.0.1 only with
trust authentication. The standby is a `pg_basebackup -R` copy streaming from a replication
slot, so the primary keeps the WAL it has not yet received.

Replication is synchronous (`synchronous_standby_names = '*'`) unless a test asks for the
asynchronous kind to show what it loses: a commit returns only once
the standby has flushed it, so a commit the services acted on (a mark acked to the broker, a
text recorded as sent) survives the primary's death. With asynchronous replication the last
commits before a crash can be missing on the promoted standby (docs/reliability.md). The
standby's own configuration names no synchronous standby: once promoted it runs alone, and
would otherwise wait for ever on a standby it does not have."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.processes import free_port

_USER = "postgres"


def _binaries() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/<ver>/bin)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "pg_basebackup").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def available() -> bool:
    """The binaries exist and we can run them as `postgres` (root's `runuser`)."""
    return _binaries() is not None and os.geteuid() == 0 and shutil.which("runuser") is not None


@dataclass
class Server:
    name: str
    port: int
    data: Path

    @property
    def pid(self) -> int:
        """The postmaster's process id, from the first line of its pid file."""
        return int((self.data / "postmaster.pid").read_text().split()[0])


class StandbyPair:
    """`primary` and `standby`; `url(database)` names both, for SQLAlchemy's asyncpg dialect."""

    def __init__(self, root: Path, *, synchronous: bool = True) -> None:
        binaries = _binaries()
        assert binaries is not None, "PostgreSQL server binaries are needed"
        self._bin = binaries
        self.root = root
        self.synchronous = synchronous
        self.primary = Server("primary", free_port(), root / "primary")
        self.standby = Server("standby", free_port(), root / "standby")

    def url(self, database: str, servers: tuple[Server, ...] = ()) -> str:
        """Both servers (or those given), the writable one chosen at each connection
        (docs/contract.md §1)."""
        hosts = "".join(f"host=127.0.0.1:{server.port}&"
                        for server in servers or (self.primary, self.standby))
        return f"postgresql+asyncpg://{_USER}@/{database}?{hosts}target_session_attrs=read-write"

    def dsn(self, server: Server, database: str = "postgres") -> str:
        """One server, for asyncpg directly (setup, checks)."""
        return f"postgresql://{_USER}@127.0.0.1:{server.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", _USER, "--", str(self._bin / program), *args],
                       check=True, capture_output=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        self._run("initdb", "-D", str(self.primary.data), "-A", "trust", "-U", _USER,
                  "--no-sync", "--no-instructions")
        (self.primary.data / "pg_hba.conf").write_text(
            "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
        with (self.primary.data / "postgresql.conf").open("a") as conf:
            conf.write(f"""
listen_addresses = '127.0.0.1'
port = {self.primary.port}
unix_socket_directories = ''
shared_buffers = 16MB
max_connections = 100
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
synchronous_standby_names = '{"*" if self.synchronous else ""}'
""")
        self._start(self.primary)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", _USER,
                  "-D", str(self.standby.data), "-R", "-X", "stream", "-C", "-S", "standby",
                  "--checkpoint=fast", "--no-sync")
        with (self.standby.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.standby.port}\nsynchronous_standby_names = ''\n")
        self._start(self.standby)
        self._await_synchronous()

    def _await_synchronous(self) -> None:
        """Until the standby streams as the synchronous one, the first commits would not
        wait for it."""
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(
                ["runuser", "-u", _USER, "--", str(self._bin / "psql"), "-h", "127.0.0.1",
                 "-p", str(self.primary.port), "-Atc",
                 "SELECT sync_state FROM pg_stat_replication"],
                check=True, capture_output=True, text=True, timeout=30, cwd=self.root)
            if state.stdout.strip() == ("sync" if self.synchronous else "async"):
                return
            assert time.monotonic() < deadline, f"standby not synchronous: {state.stdout!r}"
            time.sleep(0.1)  # the walsender offers no event to await from here

    def _start(self, server: Server) -> None:
        self._run("pg_ctl", "-D", str(server.data), "-l", str(self.root / f"{server.name}.log"),
                  "-w", "-t", "60", "start")

    def kill_primary(self) -> None:
        """kill -9 of the postmaster: no shutdown checkpoint, no goodbye to clients. Its
        backends notice the postmaster is gone and exit on their own."""
        os.kill(self.primary.pid, signal.SIGKILL)

    def kill_primary_machine(self) -> None:
        """kill -9 of every process of the primary at once, as when its machine is lost:
        nothing more leaves it, not even WAL already written."""
        for pid in _pids_under(self.primary.data):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def pause(self, pid: int) -> None:
        """SIGSTOP one server process (a walsender: the standby then hears nothing)."""
        os.kill(pid, signal.SIGSTOP)

    def promote_standby(self) -> None:
        """`pg_ctl promote -w`: returns once the standby accepts writes."""
        self._run("pg_ctl", "-D", str(self.standby.data), "-w", "-t", "60", "promote")

    def stop(self) -> None:
        """Stop whatever is still running, immediately (the data is thrown away)."""
        for server in (self.standby, self.primary):
            if (server.data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError,
                                         subprocess.TimeoutExpired):
                    self._run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w",
                              "stop")
        self._reap_orphans()

    def _reap_orphans(self) -> None:
        """A killed postmaster's backends exit once they notice; wait for the last of them
        to let go of the data directory before it is removed."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pids_under(self.root):
            time.sleep(0.1)  # no event to await from another user's processes


def _pids_under(root: Path) -> list[int]:
    """The processes whose working directory is under `root` (PostgreSQL's run in their
    data directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(proc / "cwd")).is_relative_to(root):
                    found.append(int(proc.name))
    return found


@contextlib.contextmanager
def standby_pair(*, synchronous: bool = True) -> Iterator[StandbyPair]:
    """A running primary and standby, stopped and removed afterwards whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="pg-standby-"))
    shutil.chown(root, _USER, _USER)
    pair = StandbyPair(root, synchronous=synchronous)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
