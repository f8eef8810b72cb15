"""The outbox worker: delivers queued messages through an edge, never losing or doubling one.

Rows are claimed one by one with a compare-and-set, so several workers (threads or
replicas) can run at once. Rows about the same request are delivered in order: an update
never overtakes the card it updates.

What the edge reports decides what happens to a row:
- `DeliveryPaused`: the edge did not try, because what the message needs is paused
  (Slack's Retry-After, or another message is probing a failing Slack). The row waits for
  the pause and keeps its attempts: a rate limit is not a failure.
- `RetryableDeliveryError`: a 5xx, a timeout. One attempt spent, unless the edge was
  already failing (an outage: the row only probed it, and the next probe is another
  row's); tried again after a short capped backoff with jitter. After `max_attempts` the
  row is dead-lettered (`dead`): a message Slack keeps failing on while others get
  through, never one held up by an outage, however long.
- `PermanentDeliveryError`: the edge will never take it (`failed`).
Dead and failed rows are logged at ERROR and reported to the workspace's leads.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from datetime import datetime, timedelta
from typing import Protocol

from approvals import outbox
from approvals.config import AppConfig
from approvals.leases import Heartbeat
from approvals.outbox_pauses import TRANSIENT_BACKOFF_CAP, transient_backoff
from approvals.store import Store
from approvals.tables import OutboxRow
from bot.logs import correlated
from workspaces.clock import Clock

log = logging.getLogger(__name__)

# A delivery is a few Slack calls of at most 10 s each (the clients' timeout); a claim older
# than this belongs to a worker that died, and its message is delivered by another.
CLAIM_FOR = timedelta(seconds=30)
# The longest an edge may ask a row to wait (an unknown kind during a rolling deploy).
MAX_BACKOFF = timedelta(minutes=5)
MAX_ATTEMPTS = 20


class RetryableDeliveryError(Exception):
    """Tried and failed, try again later: a 5xx, a timeout. `retry_after` (seconds), when
    given, is when the edge wants the next try; otherwise the worker's backoff decides.

    `failing_scope`: the failure paused that scope for every message (the edge's
    `failing`), and it was the scope's `failures_in_a_row`-th. Only the first in a row is
    charged to the message: the later ones are the edge's outage, whatever message probed."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        *,
        failing_scope: str | None = None,
        failures_in_a_row: int = 0,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.failing_scope = failing_scope
        self.failures_in_a_row = failures_in_a_row

    @property
    def during_an_outage(self) -> bool:
        return self.failing_scope is not None and self.failures_in_a_row > 1


class DeliveryPaused(RetryableDeliveryError):
    """Not tried: `scope` is paused until `until` for every message. Costs no attempt."""

    def __init__(self, reason: str, *, scope: str, until: datetime) -> None:
        super().__init__(reason)
        self.scope = scope
        self.until = until


class PermanentDeliveryError(Exception):
    """The edge will never accept this message (e.g. `channel_not_found`)."""


class Deliverer(Protocol):
    def deliver(self, row: OutboxRow) -> None:
        """Deliver one message or raise one of the two errors above."""
        ...


def _failed_its_last_try(row: OutboxRow) -> bool:
    # A failure charged to the row leaves its error and nothing to wait for; a row put back
    # for a pause (or for an outage it probed) is `waiting_for` it, and one woken when the
    # pause lifted carries no error.
    return row.last_error is not None and row.waiting_for is None


def _ordering_key(row: OutboxRow) -> str | None:
    if isinstance(row.payload, dict) and row.payload.get("ordering_key"):
        return str(row.payload["ordering_key"])
    request_id = row.payload.get("request_id") if isinstance(row.payload, dict) else None
    return f"request:{request_id}" if request_id is not None else None


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        clock: Clock,
        config: AppConfig | None = None,
        worker_id: str | None = None,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_cap: timedelta = TRANSIENT_BACKOFF_CAP,
        rng: random.Random | None = None,
        claim_for: timedelta = CLAIM_FOR,
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.clock = clock
        self.config = config
        self.max_attempts = max_attempts
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        self.claim_for = claim_for
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def _claim(self, row_id: int) -> bool:
        return outbox.claim(self.store, row_id, self.worker_id, self.clock.now(), self.claim_for)

    def run_once(self, limit: int = 200) -> int:
        """Deliver what is due now. Returns how many messages were delivered.

        Rows whose last try was charged an attempt go after the others: while Slack is
        up, a message Slack fails on then cannot keep its scope paused for everyone (the
        others' calls get through between its tries, so each of its failures is the first
        in a row, charged to it, and it runs out of attempts on its own). In an outage
        the oldest row probes, charged only for the outage's first failure, so the order
        holds when Slack is back."""
        now = self.clock.now()
        rows = outbox.pending_in_order(self.store, limit)
        blocked: set[str] = set()
        failed_last: list[OutboxRow] = []
        delivered = 0
        for row in rows:
            key = _ordering_key(row)
            if key is not None and key in blocked:
                continue
            if _failed_its_last_try(row):
                failed_last.append(row)
                if key is not None:
                    blocked.add(key)  # the head of its key, tried in the second round
                continue
            delivered += self._try(row, key, now, blocked)
        for row in failed_last:
            delivered += self._try(row, _ordering_key(row), now, blocked)
        return delivered

    def _try(self, row: OutboxRow, key: str | None, now: datetime, blocked: set[str]) -> int:
        due = row.next_attempt_at <= now
        claimed_elsewhere = row.claimed_until is not None and row.claimed_until >= now
        if not due or claimed_elsewhere or not self._claim(row.id):
            if key is not None:
                blocked.add(key)  # keep later messages about it behind this one
            return 0
        if self._deliver(row):
            return 1
        if key is not None:
            blocked.add(key)
        return 0

    def _deliver(self, row: OutboxRow) -> bool:
        # Logged under the id of the work that queued the message (approvals/correlation.py).
        with correlated(row.correlation_id):
            return self._deliver_correlated(row)

    def _deliver_correlated(self, row: OutboxRow) -> bool:
        try:
            with self._claim_kept(row.id):
                self.deliverer.deliver(row)
        except DeliveryPaused as exc:
            self._wait_for_pause(row, exc)
            return False
        except RetryableDeliveryError as exc:
            if exc.during_an_outage:
                self._probed_an_outage(row, exc)
            else:
                self._reschedule(row, str(exc), exc.retry_after)
            return False
        except PermanentDeliveryError as exc:
            self._give_up(row, str(exc))
            return False
        except Exception as exc:  # an unknown failure is retried, never dropped
            log.exception("delivering outbox message %s failed", row.id)
            self._reschedule(row, f"{type(exc).__name__}: {exc}", None)
            return False
        if not outbox.mark_sent(self.store, row.id, self.clock.now(), holder=self.worker_id):
            self._taken_over(row)
        return True

    def _claim_kept(self, row_id: int) -> Heartbeat:
        """The claim renewed every third of it while the row is delivered: a delivery is
        several Slack calls, each up to its timeout, and another worker taking the row over
        mid-way would find a step attempted but not yet shown, and post it again."""

        def renew() -> bool:
            until = self.clock.now() + self.claim_for
            return outbox.renew_claim(self.store, row_id, self.worker_id, until)

        return Heartbeat(renew, self.claim_for.total_seconds() / 3, f"outbox message {row_id}")

    def _taken_over(self, row: OutboxRow) -> None:
        log.warning(
            "outbox message %s (%s) was taken over by another worker; left to it",
            row.id,
            row.kind,
        )

    def _wait_for_pause(self, row: OutboxRow, paused: DeliveryPaused) -> None:
        """Put the row back until the pause ends, attempts untouched."""
        log.info("outbox message %s (%s) waits for %s", row.id, row.kind, paused)
        if not outbox.wait_for_pause(
            self.store,
            row.id,
            max(paused.until, self.clock.now()),
            paused.scope,
            str(paused),
            holder=self.worker_id,
        ):
            self._taken_over(row)

    def _probed_an_outage(self, row: OutboxRow, failed: RetryableDeliveryError) -> None:
        """The row's call found its scope still failing: it waits for the pause like the
        others (woken when a call gets through), attempts untouched."""
        assert failed.failing_scope is not None
        wait = timedelta(seconds=failed.retry_after or 0)
        log.warning(
            "outbox message %s (%s) found %s still failing (%s in a row); tried again in %ss",
            row.id,
            row.kind,
            failed.failing_scope,
            failed.failures_in_a_row,
            wait.total_seconds(),
        )
        if not outbox.wait_for_pause(
            self.store,
            row.id,
            self.clock.now() + wait,
            failed.failing_scope,
            str(failed),
            holder=self.worker_id,
        ):
            self._taken_over(row)

    def _reschedule(self, row: OutboxRow, reason: str, retry_after: float | None) -> None:
        attempts = row.attempts + 1
        if attempts >= self.max_attempts:
            self._give_up(row, f"{reason} (gave up after {attempts} attempts)", dead=True)
            return
        backoff = (
            timedelta(seconds=retry_after)
            if retry_after
            else transient_backoff(attempts, self.rng, self.backoff_cap)
        )
        now = self.clock.now()
        log.warning(
            "outbox message %s (%s) will be retried in %ss: %s",
            row.id,
            row.kind,
            backoff.total_seconds(),
            reason,
        )
        until = now + min(backoff, MAX_BACKOFF)
        if not outbox.reschedule(
            self.store, row.id, attempts, until, reason, holder=self.worker_id
        ):
            self._taken_over(row)

    def _give_up(self, row: OutboxRow, reason: str, *, dead: bool = False) -> None:
        """`failed` (refused for good) or `dead` (too many failed attempts): either way
        logged at ERROR and reported to the leads, never retried."""
        now = self.clock.now()
        log.error(
            "outbox message %s (%s) %s: %s",
            row.id,
            row.kind,
            "dead-lettered" if dead else "rejected for good",
            reason,
        )
        reports: list[tuple[str, str]] = []
        workspace = self._workspace_of(row)
        if (
            self.config is not None
            and workspace is not None
            and not row.payload.get("delivery_report")
        ):
            text = (
                f"amlbot could not deliver a message ({row.kind}) in workspace "
                f"`{workspace}`: {reason}. "
                + (
                    "Slack kept failing; the message is kept as dead-lettered."
                    if dead
                    else "Check the channel configured for it."
                )
            )
            reports = [(lead, text) for lead in self.config.workspaces[workspace].team_leads]
        if not outbox.give_up(
            self.store,
            row.id,
            dead=dead,
            reason=reason,
            now=now,
            reports=reports,
            holder=self.worker_id,
        ):
            self._taken_over(row)

    def _workspace_of(self, row: OutboxRow) -> str | None:
        payload = row.payload
        if isinstance(payload.get("workspace"), str):
            return str(payload["workspace"])
        request_id = payload.get("request_id")
        if request_id is None:
            return None
        return outbox.request_workspace(self.store, int(request_id))
