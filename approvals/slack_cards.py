"""Where each request's cards live (channel, ts), and which Slack calls were already made
for an outbox message. Both in the database: a restart or another replica finds them."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from approvals.slack_tables import SlackCardRow, SlackSentStepRow
from approvals.store import Store
from workspaces.clock import Clock


class CardStore:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def cards_for(self, request_id: int) -> list[SlackCardRow]:
        with self.store.transaction() as session:
            return list(
                session.scalars(
                    select(SlackCardRow)
                    .where(SlackCardRow.request_id == request_id)
                    .order_by(SlackCardRow.id)
                )
            )

    def channel_card(self, request_id: int) -> SlackCardRow | None:
        return next((c for c in self.cards_for(request_id) if c.placement == "channel"), None)

    def save(self, request_id: int, channel: str, ts: str, placement: str, version: int) -> None:
        now = self.clock.now()
        try:
            with self.store.transaction() as session:
                session.add(
                    SlackCardRow(
                        request_id=request_id,
                        channel=channel,
                        ts=ts,
                        placement=placement,
                        posted_at=now,
                        updated_at=now,
                        shown_version=version,
                    )
                )
        except IntegrityError:
            # A card for this place exists (it was deleted in Slack and posted again).
            with self.store.transaction() as session:
                session.execute(
                    update(SlackCardRow)
                    .where(SlackCardRow.request_id == request_id, SlackCardRow.channel == channel)
                    .values(ts=ts, updated_at=now, shown_version=version)
                )

    def shown(self, card_id: int, version: int) -> None:
        with self.store.transaction() as session:
            session.execute(
                update(SlackCardRow)
                .where(SlackCardRow.id == card_id)
                .values(shown_version=version, updated_at=self.clock.now())
            )

    def step_done(self, outbox_id: int, step: str) -> SlackSentStepRow | None:
        with self.store.transaction() as session:
            return session.scalars(
                select(SlackSentStepRow).where(
                    SlackSentStepRow.outbox_id == outbox_id, SlackSentStepRow.step == step
                )
            ).first()

    def record_step(self, outbox_id: int, step: str, channel: str | None, ts: str | None) -> None:
        try:
            with self.store.transaction() as session:
                session.add(
                    SlackSentStepRow(
                        outbox_id=outbox_id,
                        step=step[:64],
                        channel=channel,
                        ts=ts,
                        done_at=self.clock.now(),
                    )
                )
        except IntegrityError:
            pass  # recorded by a worker that raced us; the step is done either way
