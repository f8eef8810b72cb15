"""The outbox loop delivers at once after work that queued a message, and runs no round
after work that queued none (`help`, a compute list): a busy worker would otherwise query
the outbox after every item."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from approvals import outbox
from approvals.store import Store
from approvals.tables import OutboxRow
from bot.services import OutboxLoop

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    yield opened
    opened.engine.dispose()


class Rounds:
    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __call__(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)


@pytest.fixture
def loop(store: Store) -> Iterator[tuple[OutboxLoop, Rounds]]:
    rounds = Rounds()
    # An hour between polls: any round after the first is a wake.
    running = OutboxLoop(
        rounds,
        interval=timedelta(hours=1),
        min_gap=timedelta(0),
        queued=outbox.queued_signal(store.engine),
    )
    running.start()
    assert rounds.wait_for(1)
    yield running, rounds
    running.stop()


def test_work_that_queued_a_message_wakes_the_loop(
    store: Store, loop: tuple[OutboxLoop, Rounds]
) -> None:
    running, rounds = loop
    with store.transaction() as session:
        outbox.notify_person(session, "alice", "done", now=NOW)
    running.wake_if_queued()
    assert rounds.wait_for(2)


def test_work_that_queued_nothing_runs_no_round(
    store: Store, loop: tuple[OutboxLoop, Rounds]
) -> None:
    running, rounds = loop
    with store.transaction() as session:
        session.execute(select(OutboxRow))  # a transaction, queuing nothing
    running.wake_if_queued()
    assert not rounds.wait_for(2, timeout=0.5)


def test_a_rolled_back_message_does_not_wake_the_loop(
    store: Store, loop: tuple[OutboxLoop, Rounds]
) -> None:
    running, rounds = loop
    with pytest.raises(RuntimeError), store.transaction() as session:
        outbox.notify_person(session, "alice", "never sent", now=NOW)
        raise RuntimeError("the command failed after queuing")
    running.wake_if_queued()
    assert not rounds.wait_for(2, timeout=0.5)


def test_a_message_queued_on_another_database_does_not_wake_the_loop(
    tmp_path: Path, loop: tuple[OutboxLoop, Rounds]
) -> None:
    running, rounds = loop
    other = Store.open(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    try:
        with other.transaction() as session:
            outbox.notify_person(session, "alice", "elsewhere", now=NOW)
    finally:
        other.engine.dispose()
    running.wake_if_queued()
    assert not rounds.wait_for(2, timeout=0.5)
