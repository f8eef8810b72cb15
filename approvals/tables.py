"""The bot's own schema. Alembic migrations in `approvals/migrations` create and evolve it."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, QueryContext, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from approvals.column_types import PayloadJSON, StatusText, UTCDateTime
from approvals.payloads import RequestPayload, load_payload


class RequestStatus(enum.StrEnum):
    """A request's life; `approvals/states.py` holds the transitions allowed between them."""

    PENDING = "pending"
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class GrantStatus(enum.StrEnum):
    """active -> revoking (one process holds the revocation under a lease) -> revoked.

    A revocation that fails stays `revoking` until its lease runs out and the next sweep or
    command takes it over (approvals/grants.py)."""

    ACTIVE = "active"
    REVOKING = "revoking"
    REVOKED = "revoked"


class OutboxStatus(enum.StrEnum):
    """pending -> sent | failed (refused for good) | dead (gave up after too many attempts)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class InboxStatus(enum.StrEnum):
    """pending -> running (claimed under a lease) -> done | pending again | dead
    (approvals/inbox.py draws the whole life)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class DriftStatus(enum.StrEnum):
    """open -> fixing (a lead claimed it; its fixing request runs) -> fixed, or open again
    when that request did not succeed (approvals/drift.py)."""

    OPEN = "open"
    FIXING = "fixing"
    FIXED = "fixed"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class RequestRow(Base):
    """One privileged (or auto-approved) action, from asking to its outcome."""

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    requester: Mapped[str] = mapped_column(String(128), index=True)
    # The parsed command as its action's model (approvals/payloads.py; never raw text, so
    # never a secret) and a one-line summary.
    payload: Mapped[RequestPayload] = mapped_column(PayloadJSON())
    summary: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[RequestStatus] = mapped_column(StatusText(RequestStatus, 16), index=True)
    approvals_needed: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None]
    deny_reason: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    reminded_at: Mapped[datetime | None]
    # Escalation (approvals/escalation.py): the first reminder to the approvers, and the
    # hand-over to the fallback approvers, each claimed once.
    nudged_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    # Bumped by every transition; lets an edge tell a stale card from a fresh one.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # While the side effect is in flight (approved, executing): until when which process
    # answers for it; a lease that ran out is resumed by a sweep (approvals/leases.py).
    lease_until: Mapped[datetime | None]
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    # Carry-outs started: the first, then one per resumption; bounded by leases.MAX_ATTEMPTS.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A reply said "you will hear the outcome" (a command handled again while its request
    # was in flight): the end of it is sent to the requester, even when policy ran it.
    outcome_owed: Mapped[bool] = mapped_column(default=False, server_default="0")
    # The inbound delivery that opened it, with its action (`origin_of`): unique, so a
    # delivery handled twice opens one request. None when nothing inbound asked (a sweep).
    origin: Mapped[str | None] = mapped_column(String(255), index=True, unique=True)


def _read_payload(row: RequestRow) -> None:
    """The stored JSON just loaded into `row.payload`, made its action's model; a payload
    that does not fit fails here, naming the request, before anything reads it."""
    stored = row.__dict__.get("payload")
    if stored is None or isinstance(stored, BaseModel):
        return
    # Only a query that left `action` unloaded lacks it; newer rows carry it in the JSON.
    action = row.__dict__.get("action") or (
        stored.get("action") if isinstance(stored, dict) else ""
    )
    set_committed_value(row, "payload", load_payload(row.__dict__.get("id"), str(action), stored))


@event.listens_for(RequestRow, "load")
def _payload_on_load(row: RequestRow, context: QueryContext) -> None:
    _read_payload(row)


@event.listens_for(RequestRow, "refresh")
def _payload_on_refresh(
    row: RequestRow, context: QueryContext, attrs: Iterable[str] | None
) -> None:
    _read_payload(row)


class VoteRow(Base):
    """An approval by one lead; two distinct rows when policy wants two approvers."""

    __tablename__ = "request_votes"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_vote_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]


class GrantRow(Base):
    """A time-bound role assignment the bot made and must take away again."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), unique=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    grantee: Mapped[str] = mapped_column(String(128), index=True)
    principal_object_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(8))
    assignment_name: Mapped[str] = mapped_column(String(64))
    assignment_id: Mapped[str | None] = mapped_column(String(512))
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[GrantStatus] = mapped_column(StatusText(GrantStatus, 16), index=True)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(128))
    revoke_error: Mapped[str | None] = mapped_column(Text)
    # While `revoking`: who claimed the revocation and until when. A claim whose lease ran
    # out (its process died, or Azure failed) is taken over by the next sweep or command.
    revoking_by: Mapped[str | None] = mapped_column(String(128))
    revoke_lease_until: Mapped[datetime | None]
    warned_at: Mapped[datetime | None]
    # Ends when the holder's work on the cluster ends (approvals/until_done.py), or at
    # `expires_at` (its time limit), whichever comes first.
    until_done: Mapped[bool] = mapped_column(default=False, server_default="0")
    # Last moment a job of the holder's was seen running (or queued) on the cluster.
    work_seen_at: Mapped[datetime | None]
    # Why it ended: work_done | time_limit | expired | revoked (None while active).
    end_reason: Mapped[str | None] = mapped_column(String(32))


class JobRow(Base):
    """A job the bot submitted or was asked to watch, followed until it ends."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("workspace", "name", name="uq_job_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"))
    requester: Mapped[str] = mapped_column(String(128), index=True)
    compute: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    studio_url: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    following: Mapped[bool] = mapped_column(default=True)


class JobWatcherRow(Base):
    __tablename__ = "job_watchers"
    __table_args__ = (UniqueConstraint("job_id", "person", name="uq_watch_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    person: Mapped[str] = mapped_column(String(128))


class AuditRow(Base):
    """Append-only: the store offers no update or delete for it."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_ws_at", "workspace", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    workspace: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The inbound item (its delivery key) or sweep step that caused it; the same id is on
    # its log lines and on the outbox messages it caused (approvals/correlation.py).
    correlation_id: Mapped[str | None] = mapped_column(String(255), index=True)


class OutboxRow(Base):
    """A message to deliver, written in the same transaction as the change that causes it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Same key twice: the second is dropped (a sweep on two replicas, a retried webhook).
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(StatusText(OutboxStatus, 16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    # The inbound item or sweep step that caused it (approvals/correlation.py).
    correlation_id: Mapped[str | None] = mapped_column(String(255))
    # The delivery pause (`DeliveryPauseRow.scope`) this message was put back for; when that
    # pause lifts early (a probe got through) the message is due again at once.
    waiting_for: Mapped[str | None] = mapped_column(String(255), index=True)


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, on both stores (SQLite has had them since 3.8)."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


class InboxRow(Base):
    """One inbound item accepted from Slack or Azure, kept until a worker has handled it.

    Written before Slack's ack or Event Grid's 200, so what was acknowledged is never lost;
    see `approvals/inbox.py` for its life.
    """

    __tablename__ = "inbox"
    # Partial, one per state a claim looks for, so an index holds only the few rows
    # waiting or running, not every handled one (approvals/inbox_claims.py).
    __table_args__ = (
        Index("ix_inbox_pending", "available_at", "id", **_where("status = 'pending'")),
        Index("ix_inbox_running", "lease_until", **_where("status = 'running'")),
        Index("ix_inbox_dead", "id", **_where("status = 'dead'")),
        # What `prune` looks for. Only done rows: an index over every row would take a new
        # entry at every claim and completion as well (a claim changes the row's status, so
        # PostgreSQL writes a new entry in every index whose predicate the row meets).
        Index("ix_inbox_done", "finished_at", **_where("status = 'done'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The delivery's own identity (Slack's event or trigger id, Event Grid's event ids): a
    # second delivery of the same item inserts nothing.
    delivery_key: Mapped[str] = mapped_column(String(255), unique=True)
    handler: Mapped[str] = mapped_column(String(64))
    # What the handler needs, secrets already withheld; emptied once handled.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[InboxStatus] = mapped_column(StatusText(InboxStatus, 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime]
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryPauseRow(Base):
    """An edge scope (a Slack method, or method and channel) nobody calls before `until`.

    Shared by every worker and replica: one 429 (or one failing call) holds back all
    messages for that scope instead of each finding out for itself.
    """

    __tablename__ = "delivery_pauses"

    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    until: Mapped[datetime]
    cause: Mapped[str] = mapped_column(String(16))  # rate_limited|failing
    # Consecutive failures of this scope; sizes the next backoff. Zero after a 429.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)


class DriftFindingRow(Base):
    """One difference the drift check found between Azure and the bot's records
    (approvals/drift.py), and what became of it."""

    __tablename__ = "drift_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    found_at: Mapped[datetime]
    # stray | missing | revocation_not_taken | min_nodes | idle_time
    kind: Mapped[str] = mapped_column(String(32))
    compute: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DriftStatus] = mapped_column(StatusText(DriftStatus, 16))
    handled_by: Mapped[str | None] = mapped_column(String(128))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"))
