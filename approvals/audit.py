"""The append-only audit trail: who did what, where, when, and how it ended."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import correlation
from approvals.store import Store
from approvals.tables import AuditRow


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    outcome: str,
    workspace: str | None = None,
    target: str | None = None,
    **detail: Any,
) -> None:
    """Add one event. Callers pass parsed, secret-free values only, never raw command text.
    It carries the correlation id of the work in hand (the inbound item that caused it)."""
    session.add(
        AuditRow(
            at=at,
            correlation_id=correlation.current(),
            actor=actor,
            action=action,
            outcome=outcome,
            workspace=workspace,
            target=target,
            detail=detail,
        )
    )


def query(
    session: Session,
    *,
    workspaces: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[AuditRow]:
    statement = select(AuditRow).order_by(AuditRow.id.desc())
    if workspaces is not None:
        statement = statement.where(AuditRow.workspace.in_(list(workspaces)))
    if since is not None:
        statement = statement.where(AuditRow.at >= since)
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.scalars(statement))


def as_dict(row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "workspace": row.workspace,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "detail": row.detail,
        "correlation_id": row.correlation_id,
    }


def export(rows: Iterable[AuditRow], fmt: str) -> str:
    """Oldest first, as JSON lines or CSV (detail as a JSON column)."""
    ordered = sorted(rows, key=lambda row: row.id)
    if fmt == "jsonl":
        return "".join(json.dumps(as_dict(row), sort_keys=True) + "\n" for row in ordered)
    if fmt == "csv":
        buffer = io.StringIO()
        fields = [
            "id",
            "at",
            "workspace",
            "actor",
            "action",
            "target",
            "outcome",
            "detail",
            "correlation_id",
        ]
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        for row in ordered:
            item = as_dict(row)
            item["detail"] = json.dumps(item["detail"], sort_keys=True)
            writer.writerow(item)
        return buffer.getvalue()
    raise ValueError(f"format must be jsonl or csv, not {fmt!r}")


def export_from(
    store: Store,
    fmt: str,
    *,
    workspaces: Sequence[str] | None = None,
    since: datetime | None = None,
) -> tuple[int, str]:
    """The matching events exported as `fmt` (see `export`): (how many, the text)."""
    with store.transaction() as session:
        rows = query(session, workspaces=workspaces, since=since)
        return len(rows), export(rows, fmt)
