"""Work gives way to the acks in flight, but never for longer than its bound."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from bot.slack import edge
from bot.slack.edge import (
    IN_FLIGHT,
    LAST_ACTIVITY,
    MAX_DEFER_SECONDS,
    AckActivity,
    AcksFirst,
    wait_for_quiet,
)


def shared_activity() -> AckActivity:
    activity: AckActivity = multiprocessing.get_context("spawn").Array("d", 2, lock=False)
    return activity


def in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


@pytest.mark.timeout(10)
def test_a_worker_waits_while_acks_are_in_flight_and_goes_once_they_are_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bound far away, so a slow machine cannot let the job go early for the wrong reason.
    monkeypatch.setattr(edge, "MAX_DEFER_SECONDS", 60)
    edge_side = AcksFirst()
    activity = shared_activity()
    edge_side.share_with_workers(activity)
    answering = edge_side.answering()
    answering.__enter__()
    assert activity[IN_FLIGHT] == 1

    job = in_thread(lambda: wait_for_quiet(activity, time.monotonic()))
    job.join(timeout=0.1)
    assert job.is_alive(), "the job went ahead while an ack was in flight"

    answering.__exit__(None, None, None)
    job.join(timeout=5)
    assert not job.is_alive()
    assert activity[IN_FLIGHT] == 0


@pytest.mark.timeout(10)
def test_a_job_handed_over_long_ago_does_not_wait_for_a_sustained_stream_of_acks() -> None:
    activity = shared_activity()
    activity[IN_FLIGHT] = 50  # acks in flight all the time
    activity[LAST_ACTIVITY] = time.monotonic()

    job = in_thread(lambda: wait_for_quiet(activity, time.monotonic() - MAX_DEFER_SECONDS))
    job.join(timeout=5)

    assert not job.is_alive()


@pytest.mark.timeout(10)
def test_a_worker_with_no_acks_around_starts_at_once() -> None:
    activity = shared_activity()  # zeros: nothing in flight, last activity long ago
    job = in_thread(lambda: wait_for_quiet(activity, time.monotonic()))
    job.join(timeout=5)
    assert not job.is_alive()


@pytest.mark.timeout(10)
def test_a_thread_waits_for_the_acks_in_this_process_within_the_same_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(edge, "MAX_DEFER_SECONDS", 60)
    acks = AcksFirst()
    with acks.answering():
        long_ago = in_thread(lambda: acks.wait_for_a_gap(time.monotonic() - 60))
        long_ago.join(timeout=5)
        assert not long_ago.is_alive()

        fresh = in_thread(lambda: acks.wait_for_a_gap(time.monotonic()))
        fresh.join(timeout=0.1)
        assert fresh.is_alive(), "the job went ahead while an ack was in flight"
    fresh.join(timeout=5)
    assert not fresh.is_alive()
