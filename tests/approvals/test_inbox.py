"""The inbox: kept once per delivery key, claimed under a lease, retried, dead-lettered,
released on shutdown; on PostgreSQL, claimers in parallel never take the same item."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from approvals import inbox, inbox_accept
from approvals.inbox import InboxItem, InboxStatus
from approvals.inbox_writer import PostgresInboxWriter, acks_writer
from approvals.sqlite_inbox_writer import SqliteInboxWriter
from approvals.store import Store
from approvals.tables import InboxRow
from bot.work import InboxWorker
from tests.slack.conftest import wait_for
from workspaces.clock import ManualClock


@pytest.fixture
def store(database_url: str) -> Store:
    opened = Store.open(database_url)
    yield opened  # type: ignore[misc]
    opened.engine.dispose()


def keep(store: Store, clock: ManualClock, key: str, handler: str = "h") -> bool:
    with store.transaction() as session:
        return inbox_accept.accept(session, key, handler, {"key": key}, clock.now()) is not None


def status_of(store: Store, key: str) -> InboxRow:
    with store.transaction() as session:
        row = session.query(InboxRow).filter_by(delivery_key=key).one()
        session.expunge(row)
        return row


class SlowHandler:
    """An inbox handler that says when it has started, and runs until told to finish."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.finish = threading.Event()
        self.runs: list[str] = []

    def __call__(self, item: InboxItem) -> None:
        self.runs.append(item.delivery_key)
        self.started.set()
        self.finish.wait(10)


def test_a_second_delivery_with_the_same_key_is_not_kept(store: Store, clock: ManualClock) -> None:
    assert keep(store, clock, "slash_command:T1") is True
    assert keep(store, clock, "slash_command:T1") is False
    assert len(inbox.claim(store, "w1", clock.now(), limit=10)) == 1


def test_the_acks_insert_stores_what_the_orm_reads_back_as_given(
    store: Store, clock: ManualClock
) -> None:
    """The acks' insert is SQL the driver runs, values bound by each column's own type:
    read back through the ORM, every field is what was given, and a key repeated in the
    batch is kept once."""
    now = clock.now()
    arrivals = [
        inbox_accept.Arrival("k1", "run_command", {"text": "help", "n": 1, "nested": {"a": [1]}}),
        inbox_accept.Arrival("k2", "open_form", {"text": "job submit"}, claimed_by="edge-1"),
        inbox_accept.Arrival("k1", "run_command", {"text": "again"}),
    ]
    ids = inbox.in_transaction(
        store.engine, lambda connection: inbox_accept.accept_many(connection, arrivals, now)
    )
    assert ids[0] is not None and ids[1] is not None and ids[2] is None
    first, second = status_of(store, "k1"), status_of(store, "k2")
    assert (first.id, first.handler, first.status, first.attempts) == (
        ids[0],
        "run_command",
        InboxStatus.PENDING,
        0,
    )
    assert first.payload == {"text": "help", "n": 1, "nested": {"a": [1]}}
    assert first.received_at == first.available_at == now and first.lease_until is None
    assert (second.status, second.claimed_by, second.attempts) == (InboxStatus.RUNNING, "edge-1", 1)
    assert second.lease_until == now + inbox.LEASE
    assert inbox.anything_due(store, now)


def test_a_claimed_item_is_not_claimed_again_while_its_lease_runs(
    store: Store, clock: ManualClock
) -> None:
    keep(store, clock, "k")
    [item] = inbox.claim(store, "w1", clock.now())
    assert inbox.claim(store, "w2", clock.now() + timedelta(seconds=29)) == []
    assert item.attempts == 1 and item.payload == {"key": "k"}


def test_an_item_whose_worker_died_is_claimed_again_after_the_lease(
    store: Store, clock: ManualClock
) -> None:
    keep(store, clock, "k")
    inbox.claim(store, "dead-worker", clock.now())
    [again] = inbox.claim(store, "w2", clock.now() + inbox.LEASE + timedelta(seconds=1))
    assert again.attempts == 2
    # The dead worker's late completion does not count: the lease is no longer its own.
    assert inbox.complete(store, again.id, "dead-worker", clock.now()) is False
    assert inbox.complete(store, again.id, "w2", clock.now()) is True


def test_a_claim_first_marks_done_what_its_holder_handled_and_only_that(
    store: Store, clock: ManualClock
) -> None:
    for key in ("a", "b", "c"):
        keep(store, clock, key)
    first, second = inbox.claim(store, "w1", clock.now(), limit=2)
    [theirs] = inbox.claim(store, "w2", clock.now())
    # w1 handled both of its items and one it does not hold: only its own are marked done.
    later = clock.now() + timedelta(seconds=1)
    assert inbox.claim(store, "w1", later, completing=[first.id, second.id, theirs.id]) == []
    assert status_of(store, "a").status == status_of(store, "b").status == InboxStatus.DONE
    assert status_of(store, "a").finished_at == later and status_of(store, "a").payload is None
    assert status_of(store, "c").status == InboxStatus.RUNNING
    # With nothing to claim but something to mark, the transaction still happens.
    assert inbox.claim(store, "w2", later, limit=0, completing=[theirs.id]) == []
    assert status_of(store, "c").status == InboxStatus.DONE


def test_an_item_completed_after_its_lease_ran_out_is_done_not_claimed_again(
    store: Store, clock: ManualClock
) -> None:
    """The heartbeat could not renew it (a database blip), but the holder finished it: its
    completion and the claim that carries it must not both take the row (on PostgreSQL they
    are one statement, which may change a row only once)."""
    keep(store, clock, "slow")
    keep(store, clock, "next")
    [slow] = inbox.claim(store, "w1", clock.now())
    later = clock.now() + inbox.LEASE + timedelta(seconds=1)
    [claimed] = inbox.claim(store, "w1", later, limit=5, completing=[slow.id])
    assert claimed.delivery_key == "next" and claimed.received_at == clock.now()
    row = status_of(store, "slow")
    assert (row.status, row.attempts, row.finished_at) == (InboxStatus.DONE, 1, later)


def test_a_handled_item_keeps_its_key_but_not_its_payload(store: Store, clock: ManualClock) -> None:
    keep(store, clock, "k")
    [item] = inbox.claim(store, "w1", clock.now())
    inbox.complete(store, item.id, "w1", clock.now())
    row = status_of(store, "k")
    assert (row.status, row.payload) == ("done", None)
    assert keep(store, clock, "k") is False


def test_a_failing_item_is_retried_later_then_dead_lettered(
    store: Store, clock: ManualClock
) -> None:
    keep(store, clock, "k")
    statuses = []
    for _ in range(3):
        clock.advance(timedelta(minutes=1))
        [item] = inbox.claim(store, "w1", clock.now())
        statuses.append(inbox.fail(store, item.id, "w1", clock.now(), "boom", max_attempts=3))
        assert inbox.claim(store, "w1", clock.now()) == []  # not at once: backoff
    assert statuses == [InboxStatus.PENDING, InboxStatus.PENDING, InboxStatus.DEAD]
    dead = status_of(store, "k")
    assert (dead.status, dead.last_error, dead.attempts) == (InboxStatus.DEAD, "boom", 3)


def test_a_released_item_is_claimable_at_once_without_counting_the_attempt(
    store: Store, clock: ManualClock
) -> None:
    keep(store, clock, "k")
    [item] = inbox.claim(store, "w1", clock.now())
    assert inbox.release(store, [item.id], "w1", clock.now()) == 1
    [again] = inbox.claim(store, "w2", clock.now())
    assert again.attempts == 1


def test_an_item_accepted_already_claimed_waits_for_its_holders_lease(
    store: Store, clock: ManualClock
) -> None:
    with store.transaction() as session:
        inbox_accept.accept(session, "k", "h", {}, clock.now(), claimed_by="edge-1")
    assert inbox.claim(store, "w1", clock.now()) == []
    assert len(inbox.claim(store, "w1", clock.now() + inbox.LEASE * 2)) == 1


def test_handled_items_are_pruned_after_slack_can_no_longer_retry(
    store: Store, clock: ManualClock
) -> None:
    keep(store, clock, "old")
    [item] = inbox.claim(store, "w1", clock.now())
    inbox.complete(store, item.id, "w1", clock.now())
    keep(store, clock, "waiting")
    assert inbox.prune(store, clock.now() + inbox.KEEP_HANDLED_FOR + timedelta(minutes=1)) == 1
    assert keep(store, clock, "waiting") is False  # the pending one stays


@pytest.mark.postgres
def test_parallel_claimers_on_postgres_take_each_item_exactly_once(
    clock: ManualClock,
) -> None:
    from tests.conftest import postgres_schema_url

    schemas = postgres_schema_url()  # kept, so the schema lives until closed below
    store = Store.open(next(schemas))
    for n in range(200):
        keep(store, clock, f"k{n}")
    taken: list[list[int]] = [[] for _ in range(4)]

    def claimer(index: int) -> None:
        while items := inbox.claim(store, f"w{index}", clock.now(), limit=3):
            taken[index] += [item.id for item in items]

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [item for items in taken for item in items]
    assert len(every) == len(set(every)) == 200
    assert all(items for items in taken), "SKIP LOCKED lets every claimer take some"
    store.engine.dispose()
    schemas.close()


def test_the_worker_runs_handlers_and_tells_about_dead_items(
    store: Store, clock: ManualClock
) -> None:
    ran: list[str] = []
    dead: list[tuple[str, str]] = []

    def works(item: InboxItem) -> None:
        ran.append(item.delivery_key)

    def breaks(item: InboxItem) -> None:
        raise RuntimeError("always")

    worker = InboxWorker(
        store,
        clock,
        {"works": works, "breaks": breaks},
        max_attempts=1,
        on_dead=lambda item, error_id: dead.append((item.delivery_key, error_id)),
        poll=0.02,
    )
    keep(store, clock, "a", "works")
    keep(store, clock, "b", "breaks")
    keep(store, clock, "c", "unknown-in-this-version")
    worker.start()
    try:
        wait_for(lambda: len(dead) == 2, what="two dead items")
    finally:
        worker.stop(grace=1)
    assert ran == ["a"]
    assert sorted(key for key, _ in dead) == ["b", "c"]
    assert status_of(store, "a").status == "done"
    assert status_of(store, "b").status == "dead"


def test_stopping_releases_what_did_not_finish_within_the_grace(
    store: Store, clock: ManualClock
) -> None:
    slow = SlowHandler()
    worker = InboxWorker(store, clock, {"slow": slow}, poll=0.02)
    keep(store, clock, "k", "slow")
    worker.start()
    slow.started.wait(5)
    worker.stop(grace=0.1)
    slow.finish.set()
    row = status_of(store, "k")
    assert (row.status, row.claimed_by, row.attempts) == ("pending", None, 0)


def test_an_item_whose_workers_keep_dying_is_dead_lettered_not_run_again(
    store: Store, clock: ManualClock
) -> None:
    """A handler that kills its process (out of memory, a crash in a library) raises nothing
    to count: each time, the lease runs out and another worker takes the item. After
    `max_attempts` of those it is dead-lettered, and the person and leads are told, instead
    of taking down one worker after another for ever."""
    keep(store, clock, "poison", "h")
    for died in range(3):
        [taken] = inbox.claim(store, f"worker-that-died-{died}", clock.now())
        assert taken.attempts == died + 1
        clock.advance(inbox.LEASE * 2)
    ran: list[str] = []
    dead: list[str] = []
    worker = InboxWorker(
        store,
        clock,
        {"h": lambda item: ran.append(item.delivery_key)},
        max_attempts=3,
        on_dead=lambda item, error_id: dead.append(item.delivery_key),
        poll=0.02,
    )
    worker.start()
    try:
        wait_for(lambda: dead, what="the item dead-lettered")
    finally:
        worker.stop(grace=1)
    assert (ran, dead) == ([], ["poison"])
    row = status_of(store, "poison")
    assert (row.status, row.attempts) == ("dead", 4)
    assert row.last_error is not None and row.last_error.startswith("AbandonedItem")


def test_leases_are_renewed_through_a_stops_grace(store: Store, clock: ManualClock) -> None:
    """While `stop` gives a running handler its grace, and until it releases what is left,
    the item's lease is renewed: no other worker takes over an item still running here."""
    slow = SlowHandler()
    lease = timedelta(seconds=0.9)  # renewed every 0.3 s
    worker = InboxWorker(store, clock, {"slow": slow}, poll=0.02, lease=lease)
    keep(store, clock, "k", "slow")
    worker.start()
    assert slow.started.wait(5)
    stopping = threading.Thread(target=worker.stop, kwargs={"grace": 5})
    stopping.start()
    try:
        for _ in range(50):  # nearly three leases go by, as time does: a step at a time
            time.sleep(0.05)
            clock.advance(timedelta(seconds=0.05))
        assert inbox.claim(store, "another-worker", clock.now()) == []
    finally:
        slow.finish.set()
        stopping.join(10)
    assert status_of(store, "k").status == "done"


@pytest.mark.postgres
def test_stopping_releases_unfinished_items_after_a_database_restart(clock: ManualClock) -> None:
    """The database restarted just before the deploy: every pooled connection is dead, and
    the release is the first statement on one. It is tried once more on a fresh connection,
    so the item is claimable at once, and the rest of the shutdown happens."""
    from tests.conftest import postgres_schema_url

    schemas = postgres_schema_url()
    name = f"amlbot-test-{uuid.uuid4().hex[:8]}"
    store = Store.open(f"{next(schemas)}&application_name={name}")
    slow = SlowHandler()
    worker = InboxWorker(store, clock, {"slow": slow}, poll=0.02)
    try:
        keep(store, clock, "k", "slow")
        worker.start()
        assert slow.started.wait(5)
        with store.engine.connect() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %(name)s AND pid <> pg_backend_pid()",
                {"name": name},
            )
        worker.stop(grace=0.1)
        row = status_of(store, "k")
        assert (row.status, row.claimed_by) == ("pending", None)
    finally:
        slow.finish.set()
        store.engine.dispose()
        schemas.close()


@pytest.mark.postgres
def test_what_a_claim_takes_after_stop_gave_up_waiting_for_it_is_released(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """`stop` waits a few seconds for a claim in progress (the database slow, a lock held),
    then goes on. What that claim takes afterwards is released, not run by threads that are
    shutting down or left to wait out its lease."""
    from sqlalchemy import text

    from tests.conftest import postgres_schema_url

    schemas = postgres_schema_url()
    store = Store.open(next(schemas))
    ran: list[str] = []
    worker = InboxWorker(store, clock, {"h": lambda item: ran.append(item.delivery_key)})
    try:
        keep(store, clock, "k", "h")
        with store.engine.connect() as holding:
            holding.execute(text("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE"))
            worker.start()  # its first claim waits for the lock
            stopping = threading.Thread(target=worker.stop, kwargs={"grace": 0.1})
            stopping.start()
            time.sleep(5.5)  # past stop's wait for the claim loop
            holding.rollback()
        stopping.join(10)
        # Released, the row looks as it did before the claim: the log tells them apart.
        wait_for(lambda: "released 1 just claimed" in caplog.text, what="the item released")
        row = status_of(store, "k")
        assert (row.status, row.attempts, ran) == ("pending", 0, [])
    finally:
        store.engine.dispose()
        schemas.close()


def test_an_item_whose_lease_ran_out_while_it_runs_here_is_not_run_twice_here(
    store: Store, clock: ManualClock
) -> None:
    """The lease runs out under a running handler (the clock jumped, as a test's does; in
    production, a heartbeat that could not reach the database): the worker's next claim
    takes the item again, and must leave it to the thread that already runs it."""
    slow = SlowHandler()
    worker = InboxWorker(store, clock, {"slow": slow}, poll=0.02, threads=2)
    keep(store, clock, "k", "slow")
    worker.start()
    try:
        assert slow.started.wait(5)
        clock.advance(inbox.LEASE * 2)
        wait_for(lambda: status_of(store, "k").attempts == 2, what="the item claimed again")
        slow.finish.set()
        wait_for(lambda: status_of(store, "k").status == "done", what="the item done")
    finally:
        slow.finish.set()
        worker.stop(grace=1)
    assert slow.runs == ["k"]


def test_a_batch_keeps_each_new_key_once_and_names_the_repeats(
    store: Store, clock: ManualClock
) -> None:
    keep(store, clock, "old")
    arrivals = [
        inbox_accept.Arrival("a", "h", {"n": 1}),
        inbox_accept.Arrival("old", "h", {"n": 2}),
        inbox_accept.Arrival("b", "h", {"n": 3}, claimed_by="edge-1"),
        inbox_accept.Arrival("a", "h", {"n": 4}),  # the same key twice in one batch
    ]
    with store.engine.begin() as connection:
        ids = inbox_accept.accept_many(connection, arrivals, clock.now())
    assert ids[0] is not None and ids[2] is not None
    assert ids[1] is None and ids[3] is None
    assert status_of(store, "a").payload == {"n": 1}
    assert status_of(store, "b").status == InboxStatus.RUNNING
    # The edge's own item is not for the workers until its lease runs out.
    assert [item.delivery_key for item in inbox.claim(store, "w", clock.now(), limit=10)] == [
        "old",
        "a",
    ]


def test_the_acks_writer_keeps_arrivals_in_groups_and_each_ack_learns_its_own_outcome(
    store: Store, clock: ManualClock
) -> None:
    """On either database (`acks_writer` picks PostgreSQL's or SQLite's writer)."""
    writer = acks_writer(store.engine.url.render_as_string(hide_password=False), clock.now)
    expected = (
        PostgresInboxWriter if store.engine.dialect.name == "postgresql" else SqliteInboxWriter
    )
    assert isinstance(writer, expected)

    async def arrive() -> list[int | None]:
        # All 200 are waiting before the loop gets round to writing: they go in together.
        kept = [writer.keep(inbox_accept.Arrival(f"k{n % 150}", "h", {"n": n})) for n in range(200)]
        return list(await asyncio.gather(*kept))

    try:
        ids = asyncio.run(arrive())
    finally:
        writer.close()
    assert all(item_id is not None for item_id in ids[:150])
    assert all(item_id is None for item_id in ids[150:])  # repeats of k0..k49
    assert writer.written == 200 and writer.batches < 200
    claimed = {item.delivery_key: item for item in inbox.claim(store, "w", clock.now(), limit=500)}
    assert len(claimed) == 150
    first = claimed["k0"]
    assert first.id == ids[0] and first.payload == {"n": 0} and first.handler == "h"
    assert first.received_at == clock.now()


@pytest.mark.postgres
def test_on_postgres_only_the_workers_claims_skip_the_wait_for_the_disk(
    clock: ManualClock,
) -> None:
    from tests.conftest import postgres_schema_url

    schemas = postgres_schema_url()
    store = Store.open(next(schemas))
    worker = InboxWorker(store, clock, {})
    try:
        with worker.inbox_store.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        with store.engine.connect() as connection:  # the handlers' state changes: durable
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    finally:
        worker.inbox_store.engine.dispose()
        store.engine.dispose()
        schemas.close()


def test_prune_reads_only_the_index_of_done_items(store: Store, clock: ManualClock) -> None:
    """`ix_inbox_done` holds one entry per handled item, and prune can read it: on
    PostgreSQL also in the plan a prepared statement settles on, made once for any values
    (a state bound as a value there cannot imply the index's condition)."""
    assert "ix_inbox_done" in plan_of_prune(store, clock)


def plan_of_prune(store: Store, clock: ManualClock) -> str:
    from sqlalchemy import event
    from sqlalchemy.dialects import postgresql

    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            prune = inbox._PRUNE.compile(dialect=postgresql.dialect(paramstyle="numeric_dollar"))
            values = prune.construct_params({"before": None})
            arguments = ", ".join(
                "now()" if name == "before" else f"'{values[name]}'"
                for name in prune.positiontup or ()
            )
            connection.exec_driver_sql(f"PREPARE prune AS {prune}")
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            # A table this small is cheaper read whole: ask what else the plan could do.
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN EXECUTE prune({arguments})").fetchall()
            connection.rollback()
        else:

            def explained(*args: Any) -> tuple[str, Any]:
                statement, parameters = args[2], args[3]
                return "EXPLAIN QUERY PLAN " + statement, parameters

            event.listen(connection, "before_cursor_execute", explained, retval=True)
            plan = connection.execute(inbox._PRUNE, {"before": clock.now()}).fetchall()
    return " ".join(str(step) for row in plan for step in row)
