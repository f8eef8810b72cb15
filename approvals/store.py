"""The database: engine, migrations, transactions. SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
_migrate_lock = threading.Lock()


# libpq's defaults wait on a database host that has gone dark for as long as TCP does
# (minutes to connect, a quarter of an hour for an answer): a worker thread, the LISTEN, a
# pooled connection would hang that long. Ours give up in seconds and find dead connections
# by keepalive; a URL that names any of these keeps its own value.
CONNECTION_DEFAULTS: dict[str, str] = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def psycopg_arguments(url: str | URL) -> dict[str, Any]:
    """`psycopg.connect`'s arguments for a PostgreSQL URL of ours, for connections kept
    outside SQLAlchemy (a LISTEN, the acks' writer on the event loop); in autocommit, with
    `CONNECTION_DEFAULTS` where the URL does not say otherwise."""
    parsed = make_url(url) if isinstance(url, str) else url
    arguments: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        "autocommit": True,
        **CONNECTION_DEFAULTS,
    }
    # The rest of the query are libpq's own keywords (sslmode, options, connect_timeout, ...),
    # as SQLAlchemy's psycopg dialect passes them.
    for key, value in parsed.query.items():
        arguments[key] = value if isinstance(value, str) else value[-1]
    return {key: value for key, value in arguments.items() if value is not None}


def _connection_defaults(url: str) -> dict[str, str]:
    """`CONNECTION_DEFAULTS` the URL does not name, as `connect_args` (which SQLAlchemy
    lets win over the URL's query, so only the ones it leaves out)."""
    named = make_url(url).query
    return {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in named}


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        # Several threads (Slack listeners, the scheduler) and processes share the file:
        # wait for a lock instead of failing, and let readers run beside a writer (WAL).
        if ":memory:" not in url and url.rstrip("/") != "sqlite:":
            # Connections of a file are cheap to keep and dear to open (the pragmas below):
            # as many as the busiest process has threads, so none is opened per transaction.
            kwargs.setdefault("pool_size", 24)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses nothing when the process dies (kill -9 included):
            # only a power cut or OS crash can drop the last commits. FULL would fsync on
            # every commit, and every ack commits the inbox row it acknowledges.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # As many kept connections as a worker has threads (16) and a few loops beside them.
    # SQLAlchemy's default keeps 5: under load every transaction past the fifth opened a
    # connection and closed it after, and each opening forks a PostgreSQL backend (seen as
    # a tenth of a `compute list` reply's CPU, and more of the database's).
    kwargs.setdefault("pool_size", 20)
    kwargs["connect_args"] = {**_connection_defaults(url), **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


# How long a writer waits for SQLite's write lock before giving up, as `busy_timeout` does.
WRITE_LOCK_WAIT_SECONDS = 30.0
# Between tries: from 0.2 ms, doubling to at most 2 ms, so a short wait is short and many
# waiting threads do not spin.
_WRITE_LOCK_FIRST_POLL_SECONDS = 0.0002
_WRITE_LOCK_MAX_POLL_SECONDS = 0.002


def make_writer_engine(url: str) -> Engine:
    """An engine for short transactions that write and must not wait longer than the lock
    they wait for: a worker's claims (`claims_store`), and on SQLite the acks' inserts
    (`approvals/sqlite_inbox_writer.py`, which begins its transactions itself, on the event
    loop, and never waits). No pre-ping (the inbox's writes retry once on a dropped
    connection instead).

    On SQLite every transaction takes the write lock as it begins (`BEGIN IMMEDIATE`), and
    waits for it by trying again within 0.2-2 ms. SQLite's own busy handler sleeps 1, 2, 5,
    10 ... 100 ms between tries, so a lock the worker held for 2 ms could cost an ack 100 ms
    (seen as a cluster of acks near 100-200 ms in bench/ack_latency.py).

    Nor does a commit here copy the write-ahead log into the database (SQLite's automatic
    checkpoint, run by whichever commit takes the log past 1,000 pages, with an `fsync`):
    it would run inside a write turn that the acks' next batch waits for. The log is
    checkpointed by the handlers' commits and by `checkpoint_log`, which the workers run
    every few seconds."""
    engine = make_engine(url, pool_pre_ping=False)
    if engine.dialect.name != "sqlite":
        return engine
    database = engine.url.database
    if database and database != ":memory:":
        _write_turns[engine] = WriteTurns(f"{database}-amlbot-writers")

    @event.listens_for(engine, "connect")
    def _begin_ourselves(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's implicit BEGIN is off
        dbapi_connection.execute("PRAGMA busy_timeout=0")  # a taken lock answers at once
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # see above

    @event.listens_for(engine, "begin")
    def _take_the_write_lock(connection: Connection) -> None:
        # On the driver's connection: a refused try costs microseconds there, and a hundred
        # through SQLAlchemy's error handling (many threads waiting made that most of the
        # worker's CPU).
        raw = connection.connection.dbapi_connection
        assert raw is not None
        deadline = time.monotonic() + WRITE_LOCK_WAIT_SECONDS
        pause = _WRITE_LOCK_FIRST_POLL_SECONDS
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as busy:
                if "locked" not in str(busy) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _WRITE_LOCK_MAX_POLL_SECONDS)

    return engine


# How often a worker copies SQLite's write-ahead log into the database (`checkpoint_log`).
CHECKPOINT_EVERY = 10.0


def checkpoint_log(engine: Engine) -> tuple[int, int] | None:
    """Copy what SQLite's write-ahead log holds into the database file, without waiting
    for or blocking any writer (a passive checkpoint), outside any write turn: the writer
    engines leave this to others (`make_writer_engine`). Returns the log's pages and how
    many of them are now in the database; None where there is no log (PostgreSQL, an
    in-memory database)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    with engine.connect() as connection:
        row = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    _busy, pages, copied = row
    return int(pages), int(copied)


class WriteTurns:
    """Turns at SQLite's write lock for the writer engines' transactions, across processes:
    an exclusive `flock` on a file beside the database, taken before `BEGIN IMMEDIATE` and
    given up after the commit (`write_turn`).

    SQLite has no way to wait for its lock but to try again: the acks' writer and a
    worker's claims waited for each other by polling every 0.2-2 ms, and measured on the
    edge (bench/ack_latency.py, SQLite at 10 in flight) a batch of acks waited 0.9 ms on
    average and one in fifteen over 5 ms, for transactions of a tenth of that. The kernel
    wakes a process blocked on a `flock` as soon as it is released. A process that dies
    holding it loses it. Other transactions (the handlers') do not take a turn; the poll in
    `make_writer_engine` still covers them. The event loop, which must not block, takes a
    turn only if it is free (`try_take`), and tries again shortly if not."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()  # a flock is per open file, not per thread
        self._fd: int | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._threads:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file(), fcntl.LOCK_UN)

    def try_take(self) -> bool:
        """The turn if nobody holds it, without waiting (for the event loop, which must not
        block); `give_back` ends it."""
        if not self._threads.acquire(blocking=False):
            return False
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._threads.release()
            return False
        except BaseException:
            self._threads.release()
            raise
        return True

    def give_back(self) -> None:
        fcntl.flock(self._file(), fcntl.LOCK_UN)
        self._threads.release()

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd


_write_turns: weakref.WeakKeyDictionary[Engine, WriteTurns] = weakref.WeakKeyDictionary()


def write_turns(engine: Engine) -> WriteTurns | None:
    """The turns a writer engine's transactions take (None: it takes none)."""
    return _write_turns.get(engine)


@contextmanager
def write_turn(engine: Engine) -> Iterator[None]:
    """This process's turn at the database's write lock for one transaction of a writer
    engine (`WriteTurns`); nothing to wait for elsewhere (PostgreSQL locks rows)."""
    turns = _write_turns.get(engine)
    if turns is None:
        yield
        return
    with turns.turn():
        yield


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # configparser treats `%` as interpolation; URLs carry %-escapes (e.g. search_path).
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    config.set_main_option("sqlalchemy.url", url)
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision. Safe to call at every start."""
    with _migrate_lock, engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Replicas starting together must not run the same migration twice.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7461626)")
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """Hands out transactions. Every state change and the messages it causes share one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True) -> Store:
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


def claims_store(store: Store, threads: int) -> Store:
    """Where a worker claims, renews, completes and fails its items: transactions that only
    write, many a second under load.

    On SQLite, an engine that takes the write lock as each begins and polls for it finely
    (`make_writer_engine`): the acks' inserts wait for these, and these for the acks.

    On PostgreSQL, an engine that skips the pre-ping (a round trip per transaction, two per
    item; inbox writes retry once on a connection the database dropped instead), whose
    statements each commit by themselves, and whose commits do not wait for the WAL to
    reach the disk. Every write here is one statement guarded by its own conditions (the
    holder, the state), so none needs a transaction around it; without one, a claim that
    also completes is one round trip (`inbox.claim`), not four (BEGIN and COMMIT). Losing the
    last claims or completions in a database crash is safe: an unclaimed item is claimed
    again, an uncompleted one is run again and its handler is idempotent. What must
    survive a crash, the accepted item and every state change of the handlers, is
    committed durably elsewhere."""
    url = store.engine.url.render_as_string(hide_password=False)
    if store.engine.dialect.name != "postgresql":
        if store.engine.url.database in (None, "", ":memory:"):
            return store  # an engine of its own would be another, empty, database
        return Store(make_writer_engine(url))
    engine = make_engine(
        url,
        pool_pre_ping=False,
        pool_size=threads + 2,
        isolation_level="AUTOCOMMIT",
    )

    @event.listens_for(engine, "connect")
    def _no_wal_wait(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        dbapi_connection.commit()

    return Store(engine)
