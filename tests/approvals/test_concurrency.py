"""Concurrent deciders execute an action exactly once, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from sqlalchemy import event, func, select

from approvals.config import AppConfig, parse_config
from approvals.tables import AuditRow
from bot.wiring import Core, build_core
from tests.paths import EXAMPLE_CONFIG
from workspaces.clock import ManualClock

TWO_LEADS = (
    EXAMPLE_CONFIG.read_text()
    .replace("team_leads: [bob]", "team_leads: [bob, carol]")
    .replace("data_scientists: [alice, carol]", "data_scientists: [alice]")
)


def two_lead_config() -> AppConfig:
    return parse_config(TWO_LEADS)


def executions(core: Core) -> int:
    with core.store.transaction() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditRow)
                .where(AuditRow.action == "access.executed")
            )
            or 0
        )


def _approve_in_child(url: str, moment: str, person: str, request_id: int, start: object) -> None:
    clock = ManualClock(datetime.fromisoformat(moment))
    core = build_core(two_lead_config(), database_url=url, clock=clock)
    start.wait()  # type: ignore[attr-defined]
    core.service.handle_text(person, f"/aml approve {request_id}")
    core.store.engine.dispose()


@pytest.mark.parametrize("deciders", [("bob", "bob"), ("bob", "carol")])
def test_two_threads_deciding_at_once_execute_once(
    database_url: str, make_core: Callable[..., Core], deciders: tuple[str, str]
) -> None:
    core = make_core(two_lead_config(), database_url)
    request_id = core.service.handle_text(
        "alice", "/aml access request gpu-cluster --reason 'race test'"
    ).request_id
    start = threading.Barrier(len(deciders))
    replies = []

    def decide(person: str) -> None:
        start.wait()
        replies.append(core.service.handle_text(person, f"/aml approve {request_id}"))

    threads = [threading.Thread(target=decide, args=(p,)) for p in deciders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.ok for r in replies) == [False, True]
    assert executions(core) == 1
    backend = core.backends("demo")
    assert len(backend.role_assignments()) == 1  # type: ignore[attr-defined]


@contextlib.contextmanager
def overtaken(core: Core, statement: str, person: str, text: str) -> Iterator[list[str]]:
    """While in the block, the first SQL statement starting with `statement` waits for
    `person`'s `text` to run to its end on a thread (and a connection) of its own: the
    other decision that lands between this one's read and its write. Yields that
    command's answer, once it has run."""
    answers: list[str] = []
    started = threading.Event()

    def overtake(_conn, _cursor, sql: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if sql.lstrip().upper().startswith(statement) and not started.is_set():
            started.set()
            thread = threading.Thread(
                target=lambda: answers.append(core.service.handle_text(person, text).text)
            )
            thread.start()
            thread.join(timeout=60)

    event.listen(core.store.engine, "before_cursor_execute", overtake)
    try:
        yield answers
    finally:
        event.remove(core.store.engine, "before_cursor_execute", overtake)


def test_two_processes_deciding_at_once_execute_once(database_url: str, clock: ManualClock) -> None:
    core = build_core(two_lead_config(), database_url=database_url, clock=clock)
    request_id = core.service.handle_text(
        "alice", "/aml access request gpu-cluster --reason 'race test'"
    ).request_id
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    processes = [
        context.Process(
            target=_approve_in_child,
            args=(database_url, clock.now().isoformat(), person, request_id, start),
        )
        for person in ("bob", "carol")
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
        assert process.exitcode == 0
    assert executions(core) == 1
    backend = core.backends("demo")
    assert len(backend.role_assignments()) == 1  # type: ignore[attr-defined]


def test_a_double_click_that_lost_the_race_hears_what_is_true_now(core: Core) -> None:
    """The second click read the request while it was pending; by the time it records its
    vote, the first click has approved and carried it out. The second answer says so."""
    request_id = core.service.handle_text(
        "alice", "/aml access request gpu-cluster --reason 'double click'"
    ).request_id
    with overtaken(core, "INSERT INTO REQUEST_VOTES", "bob", f"/aml approve {request_id}") as (
        first_click
    ):
        second = core.service.handle_text("bob", f"/aml approve {request_id}")
    assert first_click[0].startswith(f"Approved #{request_id}")
    assert not second.ok
    assert "needs another team lead" not in second.text
    assert f"You already approved #{request_id}; it has been carried out" in second.text
    assert "has access to `gpu-cluster`" in second.text
    assert executions(core) == 1


def test_a_deny_that_lost_the_race_to_an_approve_says_what_happened(
    database_url: str, make_core: Callable[..., Core]
) -> None:
    """carol's deny read the request while it was pending; before its compare-and-set
    lands, bob's approve (on a connection of its own) decides and carries it out. The deny
    changes nothing and tells carol the request is no longer pending, and why."""
    core = make_core(two_lead_config(), database_url)
    request_id = core.service.handle_text(
        "alice", "/aml access request gpu-cluster --reason 'race test'"
    ).request_id
    with overtaken(core, "UPDATE REQUESTS", "bob", f"/aml approve {request_id}") as approve:
        deny = core.service.handle_text("carol", f"/aml deny {request_id} --reason 'not now'")
    assert approve[0].startswith(f"Approved #{request_id}")
    assert not deny.ok
    assert deny.text.startswith(
        f"Request #{request_id} is no longer pending: done, approved by bob"
    )
    assert executions(core) == 1
    with core.store.transaction() as session:
        denials = session.scalar(
            select(func.count()).select_from(AuditRow).where(AuditRow.action == "access.denied")
        )
    assert denials == 0
