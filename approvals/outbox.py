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

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from approvals import correlation
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
    """Queue one message. With a `dedupe_key` already queued, nothing is added. It carries
    the correlation id of the work in hand, and its delivery logs under that id."""
    values = {
        "created_at": now,
        "correlation_id": correlation.current(),
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
