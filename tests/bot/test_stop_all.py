"""Shutting down: every background service is stopped, even when one fails to."""

from __future__ import annotations

from pathlib import Path

import pytest

from approvals.store import Store
from bot.processes import stop_all
from bot.work import InboxWorker
from workspaces.clock import ManualClock


class FailsToStop:
    name = "stuck"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        raise OSError("its database went away")


def test_a_service_that_fails_to_stop_does_not_keep_the_others_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'amlbot.sqlite3'}")
    worker = InboxWorker(store, ManualClock(), {}, poll=0.02)
    worker.start()
    try:
        stop_all([worker, FailsToStop()])  # stopped in reverse: the failing one first
        assert not worker.ready()
        assert worker._loop_thread is not None and not worker._loop_thread.is_alive()
        assert "stopping stuck failed; stopping the rest" in caplog.text
    finally:
        store.engine.dispose()
