"""Files and directories this service creates that hold pupils' and families' details: the
SQLite databases and the local outbox are readable by the service's user only (docs/security.md
"Edges and data at rest")."""

from __future__ import annotations

import os
from pathlib import Path


def private_directory(directory: Path) -> None:
    """Create `directory` (and missing parents) readable by this user only: 0700. An
    existing directory is left as its owner made it."""
    if directory.is_dir():
        return
    private_directory(directory.parent)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return
    directory.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened


def private_file(path: Path) -> None:
    """Create the file readable and writable by this user only (0600) before SQLite opens
    it: SQLite gives its -wal and -shm files the database's permissions. A database file
    that exists already is narrowed to 0600 too: it holds pupils' and families' details."""
    private_directory(path.parent)
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)
