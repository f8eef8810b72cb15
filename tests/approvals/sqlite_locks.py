"""Another process holding SQLite's write lock, or the writers' turn beside it
(`approvals.store.WriteTurns`), for as long as a test needs: what a worker in the middle of
its claim looks like to the acks' writer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Lock = Literal["the writers' turn", "SQLite's write lock"]
LOCKS: tuple[Lock, ...] = ("the writers' turn", "SQLite's write lock")


@contextmanager
def held_by_another_process(database: str, lock: Lock) -> Iterator[subprocess.Popen[str]]:
    """A process holding `lock` of the SQLite file `database` until `let_go` (or the end)."""
    if lock == "the writers' turn":
        hold = (
            "import fcntl, os\n"
            f"fd = os.open({database + '-amlbot-writers'!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        )
    else:
        hold = (
            "import sqlite3\n"
            f"db = sqlite3.connect({database!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
        )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold + "print('held', flush=True)\ninput()\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


def let_go(holder: subprocess.Popen[str]) -> None:
    """The holder ends, and its lock with it."""
    assert holder.stdin is not None
    holder.stdin.write("done\n")
    holder.stdin.flush()
    holder.wait(10)
