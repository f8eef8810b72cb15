"""How the outbox comes through a Slack outage, on the wall clock.

    python bench/slack_outage.py [--messages 100] [--rate-limited 30] [--failing 30]

Queues the messages (channel notices and DMs), then the fake Slack answers every call
429 (Retry-After: --retry-after) for --rate-limited seconds, then 500 for --failing
seconds, then recovers. --workers outbox workers (each as its own replica: its own Slack
client and deliverer, one shared SQLite database) poll as `amlbot serve` does. Prints how
many messages arrived, how many twice, and the seconds from recovery to the last delivery.
Takes about the two phases plus up to 15 s. Asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from slack_sdk import WebClient  # noqa: E402
from sqlalchemy import select  # noqa: E402

from approvals import outbox  # noqa: E402
from approvals.config import load_config  # noqa: E402
from approvals.tables import OutboxRow, OutboxStatus  # noqa: E402
from bot.outbox_worker import OutboxWorker  # noqa: E402
from bot.services import OUTBOX_MIN_GAP, OUTBOX_POLL, OutboxLoop  # noqa: E402
from bot.slack.delivery import SlackDeliverer  # noqa: E402
from bot.slack.identity import Identity  # noqa: E402
from bot.slack.renderers import RENDERERS  # noqa: E402
from bot.wiring import Core, build_core  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.fakes.slack_signing import DEMO_CHANNEL_ID  # noqa: E402
from workspaces.clock import SystemClock  # noqa: E402

TOKEN = "xoxb-amlbot-bench"
USERS = {"U0ALICE01": "alice@example.com", "U0CAROL01": "carol@example.com"}


@dataclass(frozen=True)
class OutageFigures:
    queued: int
    delivered: int
    duplicates: int
    dead: int
    recovery_to_last_delivery: float
    calls_during_outage: int
    most_attempts: int


def run_outage(
    *,
    messages: int,
    rate_limited: float,
    failing: float,
    retry_after: int,
    workers: int,
    folder: Path,
    give_up_after: float = 120.0,
) -> OutageFigures:
    clock = SystemClock()
    core = build_core(load_config(None), database_url=f"sqlite:///{folder}/bench.db", clock=clock)
    loops: list[OutboxLoop] = []
    with FakeSlack(token=TOKEN, channels={DEMO_CHANNEL_ID}, users=USERS) as slack:
        for n in range(workers):
            client = WebClient(token=TOKEN, base_url=slack.base_url, timeout=10)
            identity = Identity(core.service.directory, core.store, clock, client)
            worker = OutboxWorker(
                core.store,
                SlackDeliverer(core, client, identity, renderers=RENDERERS),
                clock,
                core.config,
                worker_id=f"replica-{n}",
            )
            loops.append(OutboxLoop(worker.run_once, OUTBOX_POLL, OUTBOX_MIN_GAP))
        slack.fail_every_call(status=429, retry_after=retry_after)
        _queue(core, messages)
        for loop in loops:
            loop.start()
        time.sleep(rate_limited)
        slack.fail_every_call(status=500)
        time.sleep(failing)
        calls_during_outage = len(slack.calls())
        slack.clear_failures()
        recovered_at = datetime.now(UTC)
        deadline = time.monotonic() + give_up_after
        while _pending(core) and time.monotonic() < deadline:
            time.sleep(0.1)
        for loop in loops:
            loop.stop()
        texts = Counter(
            m.text
            for channel in (DEMO_CHANNEL_ID, *USERS)
            for m in slack.messages_in(channel)
            if m.text.startswith("bench message")
        )
    with core.store.transaction() as session:
        rows = list(session.scalars(select(OutboxRow)))
    core.store.engine.dispose()
    sent = [r.sent_at for r in rows if r.sent_at is not None]
    return OutageFigures(
        queued=messages,
        delivered=len(texts),
        duplicates=sum(count - 1 for count in texts.values()),
        dead=sum(r.status == OutboxStatus.DEAD for r in rows),
        recovery_to_last_delivery=(max(sent) - recovered_at).total_seconds() if sent else -1.0,
        calls_during_outage=calls_during_outage,
        most_attempts=max((r.attempts for r in rows), default=0),
    )


def _queue(core: Core, messages: int) -> None:
    now = core.clock.now()
    people = ["alice", "carol"]
    with core.store.transaction() as session:
        for n in range(messages):
            text = f"bench message {n}"
            if n % 3 == 2:  # a third go to people (DMs: a scope of their own)
                outbox.notify_person(session, people[n % 2], text, now=now)
            else:
                outbox.enqueue(
                    session, outbox.CHANNEL_NOTICE, {"workspace": "demo", "text": text}, now=now
                )


def _pending(core: Core) -> int:
    with core.store.transaction() as session:
        statuses = session.scalars(select(OutboxRow.status))
        return sum(status == OutboxStatus.PENDING for status in statuses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate-limited", type=float, default=30.0, help="seconds of 429")
    parser.add_argument("--failing", type=float, default=30.0, help="seconds of 500")
    parser.add_argument("--retry-after", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        figures = run_outage(
            messages=args.messages,
            rate_limited=args.rate_limited,
            failing=args.failing,
            retry_after=args.retry_after,
            workers=args.workers,
            folder=Path(folder),
        )
    print(
        f"outage: {args.rate_limited:g}s of 429 (Retry-After {args.retry_after}), "
        f"{args.failing:g}s of 500; {args.workers} workers"
    )
    print(f"queued                         {figures.queued}")
    print(f"delivered                      {figures.delivered}")
    print(f"duplicates                     {figures.duplicates}")
    print(f"dead-lettered                  {figures.dead}")
    print(f"recovery to last delivery (s)  {figures.recovery_to_last_delivery:.1f}")
    print(f"Slack calls during the outage  {figures.calls_during_outage}")
    print(f"most attempts of one message   {figures.most_attempts}")


if __name__ == "__main__":
    main()
