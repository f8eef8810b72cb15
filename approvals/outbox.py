"""Messages the bot owes people, queued in the transaction that caused them.

The core only writes events; each edge (console, Slack) delivers them its own way. Kinds:
- `request.opened`   {request_id}: show the approval card to the workspace's leads
- `request.updated`  {request_id}: refresh that card in place, it changed state
- `person.notice`    {person, text, request_id?}: tell one person (thread or DM)
- `channel.notice`   {workspace, text, request_id?}: tell the workspace's channel
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from approvals.store import Store
from approvals.tables import OutboxRow

REQUEST_OPENED = "request.opened"
REQUEST_UPDATED = "request.updated"
PERSON_NOTICE = "person.notice"
CHANNEL_NOTICE = "channel.notice"


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    dedupe_key: str | None = None,
) -> None:
    """Queue one message. With a `dedupe_key` already queued, nothing is added."""
    values = {
        "created_at": now,
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }
    dialect = session.get_bind().dialect.name
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
        .where(OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now)
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
                .values(status="sent", sent_at=now)
            )
