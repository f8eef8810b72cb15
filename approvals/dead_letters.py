"""What the leads hear of an inbox item that failed every attempt (the person who sent it
is told by the edge, in the words of their own request)."""

from __future__ import annotations

from datetime import datetime

from approvals import outbox
from approvals.directory import Directory
from approvals.inbox import InboxItem
from approvals.store import Store


def tell_leads_of_dead_item(
    store: Store,
    directory: Directory,
    item: InboxItem,
    person: str,
    error_id: str,
    now: datetime,
) -> None:
    """Tell the leads of `person`'s workspaces that an item they sent failed every attempt,
    and where it is kept (the inbox, by its number)."""
    leads = {lead for ws in directory.workspaces_of(person) for lead in ws.team_leads}
    with store.transaction() as session:
        for lead in sorted(leads - {person}):
            outbox.notify_person(
                session,
                lead,
                f"amlbot could not handle something {person} sent ({item.handler}) after "
                f"{item.attempts} attempts (error id `{error_id}`). It is kept as inbox "
                f"item {item.id}; the log has the details under that error id.",
                now=now,
                dedupe_key=f"dead-inbox:{item.id}:{lead}",
            )
