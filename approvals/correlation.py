"""The correlation id of the work in hand: one per inbound item, followed through all it causes.

A worker sets it from the inbox item's delivery key (Slack's event or trigger id, Event
Grid's event ids) before the item's handler runs; a sweep step sets one of its own. Every
log record on that thread carries it (`bot/logs.py`), and so do the audit events and the
outbox messages written meanwhile (`audit.record`, `outbox.enqueue` read it here), and the
outbox's delivery logs under the id of the message it delivers. One id thus finds the
command, the decision, the Azure calls (each logged with Azure's `x-ms-request-id`) and the
replies, in the logs and in the database alike.

A context variable rather than a parameter: the id belongs to the whole unit of work, and
threading it through every domain call would put an argument on functions that do not use
it. It is dependency-free so that the domain can read it without knowing who set it.

Beside it, the inbound delivery in hand (`delivering`): a request it opens records the
delivery as its origin, so a delivery handled twice (a worker that died before marking it
done, a lease that ran out) opens one request, and the second handling answers with it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "amlbot_correlation_id", default=None
)


@dataclass(frozen=True)
class Delivery:
    """The inbound item being handled: its delivery key and which handling of it this is."""

    key: str
    attempt: int


_delivery: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "amlbot_delivery", default=None
)


def current() -> str | None:
    return correlation_id.get()


@contextmanager
def correlated(value: str | None) -> Iterator[None]:
    """Inside, `current()` is `value` (None: leave the id in hand as it is)."""
    if value is None:
        yield
        return
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


def delivery() -> Delivery | None:
    """The inbound item in hand, if the work in hand is one (None in a sweep, the console)."""
    return _delivery.get()


@contextmanager
def delivering(key: str, attempt: int) -> Iterator[None]:
    """Handling the inbound item `key` for the `attempt`-th time; also its correlation id."""
    token = _delivery.set(Delivery(key, attempt))
    try:
        with correlated(key):
            yield
    finally:
        _delivery.reset(token)
