"""bench/notify_sweeps.py still runs (its Event Grid part once called an API that had
changed): a small run prints each of its three figures."""

from __future__ import annotations

from tests.benches import run_bench


def test_the_notification_bench_prints_its_figures() -> None:
    out = run_bench("notify_sweeps.py", "--jobs", "5", "--events", "5")
    assert "job sweep, 5 followed jobs: median" in out
    assert "idle sweep, demo workspace: median" in out
    assert "Event Grid delivery -> deliverer, 5 events: median" in out
