"""The request state machine. Every transition is one compare-and-set in the database.

    pending -> approved -> executing -> succeeded | failed
    pending -> denied | cancelled | expired

A double click, a retried delivery or a second replica races on the same UPDATE ... WHERE
status = <expected>; exactly one wins, so an action executes exactly once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from approvals.tables import RequestRow

# Defined beside its row so the column reads back as it; named here, where its life is.
from approvals.tables import RequestStatus as RequestStatus

FINAL_STATES = frozenset(
    {
        RequestStatus.SUCCEEDED,
        RequestStatus.FAILED,
        RequestStatus.DENIED,
        RequestStatus.CANCELLED,
        RequestStatus.EXPIRED,
    }
)

ALLOWED: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.PENDING: frozenset(
        {
            RequestStatus.APPROVED,
            RequestStatus.DENIED,
            RequestStatus.CANCELLED,
            RequestStatus.EXPIRED,
        }
    ),
    RequestStatus.APPROVED: frozenset({RequestStatus.EXECUTING}),
    RequestStatus.EXECUTING: frozenset({RequestStatus.SUCCEEDED, RequestStatus.FAILED}),
}


class IllegalTransitionError(Exception):
    pass


def transition(
    session: Session,
    request_id: int,
    source: RequestStatus,
    target: RequestStatus,
    **changes: Any,
) -> bool:
    """Move a request from `source` to `target` if it is still in `source`.

    Returns False when another actor got there first (the caller reports the current state).
    """
    if target not in ALLOWED.get(source, frozenset()):
        raise IllegalTransitionError(f"{source} -> {target} is not a transition")
    result = session.execute(
        update(RequestRow)
        .where(RequestRow.id == request_id, RequestRow.status == source)
        .values(status=target, version=RequestRow.version + 1, **changes)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
