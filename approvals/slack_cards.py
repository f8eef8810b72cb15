"""Where each request's cards live (channel, ts), and which Slack calls were already made
for an outbox message. Both in the database: a restart or another replica finds them."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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

    def attempting(self, outbox_id: int, step: str, channel: str) -> SlackSentStepRow | None:
        """Write down that the step is about to be posted, before posting: if this process
        dies before it hears Slack's answer, the retry knows to look before posting again.

        Returns None for a first attempt (now written down), else the step's earlier
        record: done (it has a `ts`) or in doubt (no `ts`). One statement either way on
        the common path."""
        key = (outbox_id, _step_key(step))
        with self.store.transaction() as session:
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            written = session.execute(
                insert(SlackSentStepRow)
                .values(
                    outbox_id=outbox_id,
                    step=key[1],
                    channel=channel,
                    attempted_at=self.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=["outbox_id", "step"])
                .returning(SlackSentStepRow.id)
            ).first()
            if written is not None:
                return None
            return session.scalars(
                select(SlackSentStepRow).where(
                    SlackSentStepRow.outbox_id == key[0], SlackSentStepRow.step == key[1]
                )
            ).one()

    def record_step(self, outbox_id: int, step: str, channel: str, ts: str) -> None:
        """The step was posted (it shows in Slack as `channel`/`ts`)."""
        with self.store.transaction() as session:
            session.execute(
                update(SlackSentStepRow)
                .where(
                    SlackSentStepRow.outbox_id == outbox_id,
                    SlackSentStepRow.step == _step_key(step),
                )
                .values(channel=channel, ts=ts, done_at=self.clock.now())
            )

    def not_posted(self, outbox_id: int, step: str) -> None:
        """Slack said plainly it did not post (refused, rate limited, paused before the
        call): the next attempt need not look for the message first."""
        with self.store.transaction() as session:
            session.execute(
                delete(SlackSentStepRow).where(
                    SlackSentStepRow.outbox_id == outbox_id,
                    SlackSentStepRow.step == _step_key(step),
                    SlackSentStepRow.ts.is_(None),
                )
            )


def _step_key(step: str) -> str:
    return step[:64]  # the column's width: every read and write names the step the same way
