"""Outbox kinds this package adds (the core's are in `approvals/outbox.py`).

- `grant.expiring` {grant_id, person, workspace, cluster, expires_at, request_id, text}:
  tell a grantee their access ends soon, with an Extend button.
- `request.reminder` {request_id, leads, text}: a pending request expires soon; one reply in
  its card's thread naming every lead who has not voted, and a DM to each of them.
- `idle.digest` {workspace, digest_id, text}: the idle computes of one workspace found by one
  sweep, one message in its channel, each item with Stop / Set minimum to 0 / Set idle time /
  Snooze.

`text` is always there, so an edge without a renderer for the kind (the console) can show it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from approvals import outbox
from approvals.tables import GrantRow

GRANT_EXPIRING = "grant.expiring"
IDLE_DIGEST = "idle.digest"
REQUEST_REMINDER = "request.reminder"


def queue_grant_expiring(session: Session, grant: GrantRow, text: str, now: datetime) -> None:
    """Warn `grant`'s holder that it ends soon (with an Extend button): once per grant, since
    both the plain expiry warning and the work-bound one may want to."""
    outbox.enqueue(
        session,
        GRANT_EXPIRING,
        {
            "grant_id": grant.id,
            "person": grant.grantee,
            "workspace": grant.workspace,
            "cluster": grant.cluster,
            "expires_at": grant.expires_at.isoformat(),
            "request_id": grant.request_id,
            "text": text,
        },
        now=now,
        dedupe_key=f"grant-expiring:{grant.id}",
    )
