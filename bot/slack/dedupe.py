"""Act once per delivery from Slack, remembered in the database.

Slack retries an event it thinks timed out (`X-Slack-Retry-Num`, same `event_id`), and a
click or form can reach us twice (a proxy retry, a second replica). The core's
compare-and-set already keeps a request from executing twice; this keeps the second
delivery from even producing a second answer. It is in the database, not in memory, so
it holds across replicas and restarts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from approvals.store import Store
from bot.slack.tables import SlackInboundRow
from workspaces.clock import Clock

# Slack retries for up to about an hour; keep keys well beyond that.
KEEP_KEYS_FOR = timedelta(days=2)


def delivery_key(body: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, key) naming one delivery: the event id for events, else the trigger id that
    Slack mints once per command, click or form submission."""
    if body.get("event_id"):
        return "event", f"event:{body['event_id']}"
    kind = str(body.get("type") or ("slash_command" if "command" in body else "other"))
    trigger = body.get("trigger_id")
    if trigger:
        return kind, f"{kind}:{trigger}"
    return None


class InboundLog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def first_time(self, body: dict[str, Any], retry_num: int = 0) -> bool:
        """True for the first delivery of this body; False for any repeat."""
        key = delivery_key(body)
        if key is None:
            return True  # nothing to tell deliveries apart by; the core's CAS still holds
        if key[0] == "slash_command" and retry_num == 0:
            # Slack never redelivers a slash command, and what a command changes is guarded
            # by the core (a second identical request is refused as already asked); skipping
            # the write keeps the commonest request cheap. Clicks, forms and events are
            # always recorded.
            return True
        kind, delivery = key
        row = {
            "delivery_key": delivery[:255],
            "kind": kind[:32],
            "retry_num": retry_num,
            "received_at": self.clock.now(),
        }
        try:
            # A plain INSERT, not the ORM: this runs for every request from Slack.
            with self.store.engine.begin() as connection:
                connection.execute(insert(SlackInboundRow), row)
        except IntegrityError:
            return False
        return True

    def prune(self) -> int:
        cutoff = self.clock.now() - KEEP_KEYS_FOR
        with self.store.transaction() as session:
            result = session.execute(
                delete(SlackInboundRow).where(SlackInboundRow.received_at < cutoff)
            )
            return int(getattr(result, "rowcount", 0) or 0)
