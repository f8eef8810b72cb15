"""On SQLite the acks' writer and the worker's claims take the write lock as they begin and
poll for it themselves (`make_writer_engine`, SQLite's busy handler switched off): they must
wait for a lock another process holds, not fail, and still commit and roll back."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from approvals.store import make_engine, make_writer_engine
from tests.approvals.sqlite_locks import held_by_another_process, let_go

HOLD_SECONDS = 0.5


def test_a_writer_waits_for_the_lock_another_process_holds(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    plain = make_engine(f"sqlite:///{path}")
    with plain.begin() as connection:
        connection.execute(text("CREATE TABLE kept (n INTEGER)"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE'); db.execute('INSERT INTO kept VALUES (1)')\n"
            "print('held', flush=True); time.sleep(float(sys.argv[1])); db.execute('COMMIT')\n",
            str(HOLD_SECONDS),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        writer = make_writer_engine(f"sqlite:///{path}")
        with writer.begin() as connection:  # waits instead of "database is locked"
            connection.execute(text("INSERT INTO kept VALUES (2)"))
        assert holder.wait(timeout=10) == 0  # the holder committed first, then the writer
        with pytest.raises(RuntimeError), writer.begin() as connection:
            connection.execute(text("INSERT INTO kept VALUES (3)"))
            raise RuntimeError("the batch failed after its insert")
        with plain.connect() as connection:
            kept = [n for (n,) in connection.execute(text("SELECT n FROM kept ORDER BY n"))]
        assert kept == [1, 2]
        writer.dispose()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        plain.dispose()


def test_a_writer_takes_its_turn_after_another_processs_and_at_once_when_it_ends(
    tmp_path: Path,
) -> None:
    """The writers' turns (`WriteTurns`): while another process holds the turn, an inbox
    write waits in the kernel instead of polling SQLite; given up, the turn passes at once.
    The holder here is a subprocess holding the turn's file lock and no database lock, so
    only the turn can hold the writer back."""
    from approvals import inbox

    path = tmp_path / "state.sqlite3"
    plain = make_engine(f"sqlite:///{path}")
    with plain.begin() as connection:
        connection.execute(text("CREATE TABLE kept (n INTEGER)"))
    writer = make_writer_engine(f"sqlite:///{path}")
    written = threading.Event()

    def write() -> None:
        inbox.in_transaction(writer, lambda c: c.execute(text("INSERT INTO kept VALUES (1)")))
        written.set()

    thread = threading.Thread(target=write, daemon=True)
    try:
        with held_by_another_process(str(path), "the writers' turn") as holder:
            thread.start()
            assert not written.wait(HOLD_SECONDS), "the writer did not wait for the turn"
            let_go(holder)
            assert written.wait(10)
        with plain.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM kept")).scalar() == 1
    finally:
        thread.join(10)
        writer.dispose()
        plain.dispose()


def test_connections_kept_outside_sqlalchemy_get_every_libpq_keyword_of_the_url() -> None:
    """The LISTEN connection and the acks' writer on the event loop connect with psycopg
    directly: a production URL's `sslmode` (and the tests' `options`) must reach them as
    they reach SQLAlchemy's connections."""
    from approvals.store import psycopg_arguments

    arguments = psycopg_arguments(
        "postgresql+psycopg://amlbot:pw@db.example:6432/amlbot"
        "?sslmode=require&options=-csearch_path%3Dt_1&connect_timeout=5"
    )
    assert arguments == {
        "host": "db.example",
        "port": 6432,
        "user": "amlbot",
        "password": "pw",
        "dbname": "amlbot",
        "autocommit": True,
        "sslmode": "require",
        "options": "-csearch_path=t_1",
        "connect_timeout": "5",
        # Ours where the URL names none: dead connections found in seconds, not minutes.
        "keepalives": "1",
        "keepalives_idle": "30",
        "keepalives_interval": "10",
        "keepalives_count": "3",
    }
    named = psycopg_arguments("postgresql+psycopg://db/amlbot?keepalives_idle=7&connect_timeout=9")
    assert (named["keepalives_idle"], named["connect_timeout"]) == ("7", "9")


@pytest.mark.postgres
def test_sqlalchemy_connections_give_up_on_a_dark_host_in_seconds_unless_the_url_says() -> None:
    """libpq's own defaults wait as long as TCP does; the URL's keywords still win."""
    from tests.conftest import postgres_schema_url

    for schema in postgres_schema_url():  # skips (or fails under CI) without PostgreSQL
        for url, timeout in ((schema, "5"), (f"{schema}&connect_timeout=11", "11")):
            engine = make_engine(url)
            try:
                with engine.connect() as connection:
                    used = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
            finally:
                engine.dispose()
            assert used["connect_timeout"] == timeout
            assert (used["keepalives"], used["keepalives_idle"]) == ("1", "30")
