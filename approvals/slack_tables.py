"""The Slack edge's own state: where each card lives, what was already sent, who is who.

These share `approvals.tables.Base` so one database and one migration chain hold them;
migration `0002` creates them. Nothing here is kept in process memory, so a card posted
before a restart, or a click delivered twice, behaves the same on any replica.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from approvals.tables import Base


class SlackCardRow(Base):
    """One approval card message: in the workspace's channel, or in a lead's DM."""

    __tablename__ = "slack_cards"
    __table_args__ = (UniqueConstraint("request_id", "channel", name="uq_slack_card_place"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    placement: Mapped[str] = mapped_column(String(16))  # channel | dm
    posted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The request's `version` the card shows: an older update never overwrites a newer one.
    shown_version: Mapped[int] = mapped_column(Integer)


class SlackSentStepRow(Base):
    """One Slack post an outbox message needs. A message that needs two posts (a thread
    reply and a DM) and fails on the second is retried without repeating the first.

    The row is written *before* the post (`attempted_at`, no `ts`) and completed after it
    (`ts`, `done_at`). A row left without a `ts` is a post in doubt: the process died, or
    the answer was lost, after Slack may have shown the message. The retry looks for it by
    its message metadata before posting again (`bot.slack.delivery`)."""

    __tablename__ = "slack_sent_steps"
    __table_args__ = (UniqueConstraint("outbox_id", "step", name="uq_slack_step_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    step: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    # Rows written before migration 0010 were recorded done, with no attempt time.
    attempted_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class SlackPersonRow(Base):
    """A configured e-mail resolved to a Slack user id through `users.lookupByEmail`, kept so
    the lookup happens once, not at every start."""

    __tablename__ = "slack_people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    team_id: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[datetime]
