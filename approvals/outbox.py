"""Messages the bot owes people, queued in the transaction that caused them.

The core only writes events; each edge (console, Slack) delivers them its own way. Kinds:
- `request.opened`   {request_id}: show the approval card to the workspace's leads
- `request.updated`  {request_id}: refresh that card in place, it changed state
- `person.notice`    {person, text, request_id?}: tell one person (thread or DM)
- `channel.notice`   {workspace, text, request_id?}: tell the workspace's channel
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from approvals import correlation
from approvals.store import Store
from approvals.tables import OutboxRow, OutboxStatus, RequestRow

REQUEST_OPENED = "request.opened"
REQUEST_UPDATED = "request.updated"
PERSON_NOTICE = "person.notice"
CHANNEL_NOTICE = "channel.notice"


_QUEUED = "amlbot_outbox_queued"
_queued_signals: weakref.WeakKeyDictionary[Engine, threading.Event] = weakref.WeakKeyDictionary()
_signals_lock = threading.Lock()


def queued_signal(engine: Engine) -> threading.Event:
    """Set once a transaction of this process that queued a message on `engine` commits:
    the outbox loop's cue to deliver at once. Work that queued nothing (`help`, a compute
    list) then costs the outbox no round; what other processes queue waits for its poll."""
    with _signals_lock:
        signal = _queued_signals.get(engine)
        if signal is None:
            signal = _queued_signals[engine] = threading.Event()
        return signal


@event.listens_for(Session, "after_commit")
def _signal_queued(session: Session) -> None:
    engine = session.info.pop(_QUEUED, None)
    if engine is not None:
        queued_signal(engine).set()


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    dedupe_key: str | None = None,
) -> None:
    """Queue one message. With a `dedupe_key` already queued, nothing is added. It carries
    the correlation id of the work in hand, and its delivery logs under that id."""
    values = {
        "created_at": now,
        "correlation_id": correlation.current(),
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }
    bind = session.get_bind()
    session.info[_QUEUED] = bind.engine
    dialect = bind.dialect.name
    if dedupe_key is not None and dialect in {"postgresql", "sqlite"}:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(OutboxRow).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
        return
    session.add(OutboxRow(**values))


def notify_person(
    session: Session,
    person: str,
    text: str,
    *,
    now: datetime,
    request_id: int | None = None,
    dedupe_key: str | None = None,
) -> None:
    enqueue(
        session,
        PERSON_NOTICE,
        {"person": person, "text": text, "request_id": request_id},
        now=now,
        dedupe_key=dedupe_key,
    )


def pending(session: Session, *, now: datetime, limit: int = 100) -> list[OutboxRow]:
    statement = (
        select(OutboxRow)
        .where(OutboxRow.status == OutboxStatus.PENDING, OutboxRow.next_attempt_at <= now)
        .order_by(OutboxRow.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def skip_superseded_card_updates(store: Store, now: datetime) -> None:
    """Of several queued updates of one request's card only the last shows anything new (a
    card is drawn from the request's current state): mark the earlier ones sent. For an
    edge that cannot redraw in place (the console prints each message)."""
    with store.transaction() as session:
        rows = pending(session, now=now, limit=1000)
        latest: dict[object, int] = {}
        for row in rows:
            if row.kind == REQUEST_UPDATED:
                latest[row.payload.get("request_id")] = row.id
        superseded = [
            row.id
            for row in rows
            if row.kind == REQUEST_UPDATED and latest[row.payload.get("request_id")] != row.id
        ]
        if superseded:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(superseded))
                .values(status=OutboxStatus.SENT, sent_at=now)
            )


# ---- what the outbox worker does with a row (bot/outbox_worker.py) ----------------------


def pending_in_order(store: Store, limit: int) -> list[OutboxRow]:
    """Undelivered rows, oldest first (due or not: the worker keeps each request's in order)."""
    with store.transaction() as session:
        return list(
            session.scalars(
                select(OutboxRow)
                .where(OutboxRow.status == OutboxStatus.PENDING)
                .order_by(OutboxRow.id)
                .limit(limit)
            )
        )


def claim(store: Store, row_id: int, worker_id: str, now: datetime, claim_for: timedelta) -> bool:
    """Compare-and-set: whether this worker may deliver the row now (no one else holds it)."""
    with store.transaction() as session:
        result = session.execute(
            update(OutboxRow)
            .where(
                OutboxRow.id == row_id,
                OutboxRow.status == OutboxStatus.PENDING,
                or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
            )
            .values(claimed_by=worker_id, claimed_until=now + claim_for)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def _held_by(row_id: int, holder: str) -> tuple[Any, ...]:
    """The row, only while `holder` still has its claim: a worker whose claim another took
    over leaves the row, and its outcome, to that one."""
    return (OutboxRow.id == row_id, OutboxRow.claimed_by == holder)


def renew_claim(store: Store, row_id: int, holder: str, until: datetime) -> bool:
    """Move `holder`'s claim on to `until` while it delivers (compare-and-set on it)."""
    with store.transaction() as session:
        result = session.execute(
            update(OutboxRow)
            .where(*_held_by(row_id, holder), OutboxRow.status == OutboxStatus.PENDING)
            .values(claimed_until=until)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def mark_sent(store: Store, row_id: int, now: datetime, *, holder: str) -> bool:
    with store.transaction() as session:
        result = session.execute(
            update(OutboxRow)
            .where(*_held_by(row_id, holder))
            .values(
                status=OutboxStatus.SENT,
                sent_at=now,
                attempts=OutboxRow.attempts + 1,
                claimed_until=None,
                last_error=None,
                waiting_for=None,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def wait_for_pause(
    store: Store,
    row_id: int,
    until: datetime,
    scope: str,
    why: str,
    *,
    holder: str,
) -> bool:
    """Put the row back until `until`, its attempts untouched: a pause is not a failure."""
    with store.transaction() as session:
        result = session.execute(
            update(OutboxRow)
            .where(*_held_by(row_id, holder))
            .values(
                next_attempt_at=until,
                waiting_for=scope,
                claimed_until=None,
                last_error=why[:1000],
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def reschedule(
    store: Store,
    row_id: int,
    attempts: int,
    next_attempt_at: datetime,
    why: str,
    *,
    holder: str,
) -> bool:
    with store.transaction() as session:
        result = session.execute(
            update(OutboxRow)
            .where(*_held_by(row_id, holder))
            .values(
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                waiting_for=None,
                claimed_until=None,
                last_error=why[:1000],
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def give_up(
    store: Store,
    row_id: int,
    *,
    dead: bool,
    reason: str,
    now: datetime,
    reports: Sequence[tuple[str, str]] = (),
    holder: str,
) -> bool:
    """`failed` (refused for good) or `dead` (too many failed attempts), and in the same
    transaction a notice of it to each (person, text) of `reports`."""
    with store.transaction() as session:
        result = session.execute(
            update(OutboxRow)
            .where(*_held_by(row_id, holder), OutboxRow.status == OutboxStatus.PENDING)
            .values(
                status=OutboxStatus.DEAD if dead else OutboxStatus.FAILED,
                attempts=OutboxRow.attempts + 1,
                claimed_until=None,
                waiting_for=None,
                last_error=reason[:1000],
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        for person, text in reports:
            enqueue(
                session,
                PERSON_NOTICE,
                {"person": person, "text": text, "delivery_report": True},
                now=now,
                dedupe_key=f"delivery-report:{row_id}:{person}",
            )
        return True


def request_workspace(store: Store, request_id: int) -> str | None:
    with store.transaction() as session:
        request = session.get(RequestRow, request_id)
        return request.workspace if request else None
