"""The Slack user ids found for people configured by e-mail, kept so that no replica asks
Slack again (`users.lookupByEmail`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from approvals.slack_tables import SlackPersonRow
from approvals.store import Store


def remembered(store: Store) -> dict[str, str]:
    """{e-mail in lower case: Slack user id} of every person found before."""
    with store.transaction() as session:
        rows = list(session.scalars(select(SlackPersonRow)))
    return {row.email.lower(): row.user_id for row in rows}


def remember(store: Store, email: str, user_id: str, team_id: str | None, now: datetime) -> None:
    """Keep what Slack answered for `email`; another replica's same answer is fine."""
    try:
        with store.transaction() as session:
            session.add(
                SlackPersonRow(
                    email=email.lower(), user_id=user_id, team_id=team_id, resolved_at=now
                )
            )
    except IntegrityError:
        pass  # another replica stored the same answer first
