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

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from approvals import outbox
from approvals.tables import GrantRow
from approvals.wording import short_ref, when
from commands.durations import format_duration
from workspaces.types import JobInfo

GRANT_EXPIRING = "grant.expiring"
IDLE_DIGEST = "idle.digest"
REQUEST_REMINDER = "request.reminder"


def queue_grant_expiring(
    session: Session, grant: GrantRow, now: datetime, still_running: Sequence[JobInfo] = ()
) -> None:
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
            "text": grant_expiring_text(grant, now, still_running),
        },
        now=now,
        dedupe_key=f"grant-expiring:{grant.id}",
    )


def grant_expiring_text(
    grant: GrantRow, now: datetime, still_running: Sequence[JobInfo] = ()
) -> str:
    """What the holder reads. A work-bound grant is warned only while jobs of theirs run
    (`still_running`): it names them, and says the access still ends with the work."""
    access = (
        f"Your access to `{grant.cluster}` in `{grant.workspace}` (grant {short_ref(grant.id)})"
    )
    left = format_duration(grant.expires_at - now)
    another = format_duration(grant.expires_at - grant.granted_at)
    if not still_running:
        return (
            f"{access} ends {when(grant.expires_at)}, in {left}. Need longer? Extend asks a "
            f"team lead for another {another}."
        )
    names = ", ".join(f"`{job.name}` ({job.status.value})" for job in still_running[:5])
    running = "job still runs" if len(still_running) == 1 else "jobs still run"
    return (
        f"{access} reaches its time limit {when(grant.expires_at)}, in {left}, while your "
        f"{running} there: {names}. Extend asks a team lead for another {another}; the access "
        "still ends with your work."
    )
