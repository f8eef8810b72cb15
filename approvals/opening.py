"""A request opened at most once per inbound delivery.

A delivery (a slash command, a click, a form) is handled again when its worker died before
marking it done, or its lease ran out mid-way. Each request records the delivery that
opened it (`requests.origin`, unique: the action and the delivery key), so the second
handling finds the request the first one opened instead of opening another, with a
second card and, for what policy runs at once, a second job, datastore or grant.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from approvals import correlation
from approvals.actions.handlers import HANDLERS
from approvals.tables import RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase

log = logging.getLogger(__name__)


class OpenedOnce(WorkflowBase):
    def open_once(self, action: str, create: Callable[[Session], RequestRow]) -> RequestRow:
        """The request of `action` the delivery in hand opens: `create`d in a transaction
        of its own, or, when the unique origin refuses the insert, the one an earlier or
        concurrent handling of the same delivery opened. `create` records the request
        first (`record_request` flushes it), so a refused one has done nothing else."""
        origin = origin_of(action)
        try:
            with self.store.transaction() as session:
                return create(session)
        except IntegrityError:
            again = self._opened_from(origin) if origin is not None else None
            if again is None:
                raise
            log.info("delivery handled again: %s was opened by it before", short_ref(again.id))
            return again

    def opened_by_delivery(self) -> RequestRow | None:
        """The request the delivery in hand opened in an earlier handling, if any (the first
        by id: break-glass opens two): what its second handling answers with."""
        inbound = correlation.delivery()
        if inbound is None or inbound.attempt <= 1:
            return None
        origins = [origin_key(known, inbound.key) for known in HANDLERS]
        with self.store.transaction() as session:
            return session.scalar(
                select(RequestRow)
                .where(RequestRow.origin.in_(origins))
                .order_by(RequestRow.id)
                .limit(1)
            )

    def _opened_from(self, origin: str) -> RequestRow | None:
        with self.store.transaction() as session:
            return session.scalar(select(RequestRow).where(RequestRow.origin == origin))


def origin_of(action: str) -> str | None:
    """The origin a request of `action` opened by the delivery in hand records: the action
    and the delivery key (hashed when too long for the column), or None outside one."""
    inbound = correlation.delivery()
    return origin_key(action, inbound.key) if inbound is not None else None


def origin_key(action: str, delivery_key: str) -> str:
    kept = f"{action}/{delivery_key}"
    if len(kept) <= 255:
        return kept
    return f"{action}/sha256:{hashlib.sha256(delivery_key.encode()).hexdigest()}"
