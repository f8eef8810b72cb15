"""The background scheduler as `amlbot serve` runs it (APScheduler, real threads), on two
replicas sharing one database: every transition announced exactly once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.scheduler import Housekeeping, NotificationScheduler
from bot.wiring import Core
from tests.notify.conftest import job_notices, replica_of, start_notifications, submit_job, wait_for
from workspaces.clock import ManualClock

TICK = timedelta(milliseconds=20)


@pytest.fixture
def two_schedulers(core: Core) -> Iterator[list[NotificationScheduler]]:
    replica = replica_of(core)
    schedulers = [start_notifications(on, tick=TICK) for on in (core, replica)]
    try:
        yield schedulers
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        replica.store.engine.dispose()


def rounds_pass(schedulers: list[NotificationScheduler], count: int = 3) -> None:
    """Wait until every scheduler has run `count` more rounds."""
    targets = [s.rounds + count for s in schedulers]
    wait_for(
        lambda: all(s.rounds >= t for s, t in zip(schedulers, targets, strict=True)),
        what=f"{count} more rounds",
    )


def test_two_schedulers_announce_a_jobs_transitions_exactly_once(
    core: Core, clock: ManualClock, two_schedulers: list[NotificationScheduler]
) -> None:
    start = clock.now()
    name = submit_job(core)
    clock.set(start + timedelta(seconds=90))  # running, and the job poll is due again
    wait_for(lambda: job_notices(core, name), what="the running notice")
    rounds_pass(two_schedulers)
    clock.set(start + timedelta(minutes=10))
    wait_for(lambda: len(job_notices(core, name)) == 2, what="the completed notice")
    rounds_pass(two_schedulers)

    assert [text.split(" on ")[0] for _, text in job_notices(core, name)] == [
        f"Job `{name}` is running",
        f"Job `{name}` completed",
    ]


def test_the_scheduler_wakes_the_outbox_when_a_round_queued_messages(
    core: Core, clock: ManualClock
) -> None:
    woken: list[int] = []
    scheduler = start_notifications(core, tick=TICK, on_change=lambda: woken.append(1))
    try:
        rounds_pass([scheduler], 2)
        assert woken  # the first idle digest of the demo
    finally:
        scheduler.stop()


def test_a_round_that_overruns_is_logged_once_and_every_skip_counted(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    chore = Housekeeping("slow-chore", TICK, lambda: release.wait(10))
    scheduler = NotificationScheduler(core, tick=TICK, housekeeping=[chore])

    def skips() -> float:
        return (
            core.metrics.registry.get_sample_value(
                "amlbot_scheduled_rounds_skipped_total", {"job": "amlbot-slow-chore"}
            )
            or 0.0
        )

    with caplog.at_level(logging.INFO):
        scheduler.start()
        try:
            wait_for(lambda: skips() >= 5, what="five skipped rounds")
            release.set()
            wait_for(
                lambda: any("the long round ended" in r.getMessage() for r in caplog.records),
                what="the end of the overrun",
            )
        finally:
            release.set()
            scheduler.stop()
    messages = [record.getMessage() for record in caplog.records]
    # APScheduler's own warning at every skipped tick is gone; ours comes once.
    assert not [m for m in messages if "maximum number of running instances" in m]
    overran = [m for m in messages if m.startswith("amlbot-slow-chore: a round is still running")]
    assert len(overran) == 1
    (ended,) = [m for m in messages if m.startswith("amlbot-slow-chore: the long round ended")]
    assert int(ended.split("; ")[1].split()[0]) >= 5
