"""The notification layer's own state. Everything a sweep needs to remember lives here, not in
APScheduler's job stores and not in process memory, so a restart or a second replica neither
repeats nor forgets a message. Migration `0003` creates these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from approvals.tables import Base


class SweepLeaseRow(Base):
    """When a sweep (e.g. `jobs:demo`, `idle:demo`) is next due. The replica whose
    compare-and-set moves `next_due_at` forward runs that round; the others skip it."""

    __tablename__ = "notify_sweeps"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    next_due_at: Mapped[datetime]
    last_claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))


class JobNoticeRow(Base):
    """The newest status already announced for a job. A status is announced only by the one
    caller (poll or webhook, on any replica) that raises `rank`, so nothing is posted twice
    and an older state never follows a newer one."""

    __tablename__ = "notify_job_states"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    rank: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class ComputeAlertRow(Base):
    """Idle-alert memory for one compute: when it was seen idle, last alerted, snoozed."""

    __tablename__ = "notify_compute_alerts"
    __table_args__ = (UniqueConstraint("workspace", "compute", name="uq_notify_compute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(64))
    compute: Mapped[str] = mapped_column(String(255))
    # First sweep that saw it idle, for computes whose idle start Azure does not report.
    idle_seen_since: Mapped[datetime | None]
    alerted_at: Mapped[datetime | None]
    alerted_fingerprint: Mapped[str | None] = mapped_column(String(255))
    snoozed_until: Mapped[datetime | None]
    # "Until changed": quiet while the compute's fingerprint is still this one.
    snoozed_fingerprint: Mapped[str | None] = mapped_column(String(255))
    snoozed_by: Mapped[str | None] = mapped_column(String(128))


class IdleDigestRow(Base):
    """One digest per workspace and sweep slot; inserting it is how a sweep claims the slot."""

    __tablename__ = "notify_idle_digests"
    __table_args__ = (UniqueConstraint("workspace", "slot", name="uq_notify_digest_slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class IdleItemRow(Base):
    """One compute shown in a digest. Its buttons carry only this row's id."""

    __tablename__ = "notify_idle_items"
    __table_args__ = (UniqueConstraint("digest_id", "compute", name="uq_notify_item_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("notify_idle_digests.id"), index=True)
    workspace: Mapped[str] = mapped_column(String(64))
    compute: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(255))
    # The finding as shown (`IdleFinding.as_json`), so the message can be redrawn later.
    finding: Mapped[dict[str, Any]] = mapped_column(JSON)
    handled_by: Mapped[str | None] = mapped_column(String(128))
    handled_note: Mapped[str | None] = mapped_column(String(255))
    handled_at: Mapped[datetime | None]


class PriceRow(Base):
    """An hourly VM price fetched from the Azure Retail Prices API, with the day it was
    fetched. The daily refresh (`approvals/prices.py`) replaces rows; every replica loads
    them into `workspaces.prices.BOOK`. Migration `0008` creates the table."""

    __tablename__ = "vm_prices"

    region: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(128), primary_key=True)
    low_priority: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    usd_per_hour: Mapped[float] = mapped_column(Float)
    meter: Mapped[str] = mapped_column(String(255))
    fetched_at: Mapped[datetime]
