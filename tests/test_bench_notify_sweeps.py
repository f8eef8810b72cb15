"""bench/notify_sweeps.py still runs (its Event Grid part once called an API that had
changed): a small run prints each of its three figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_notification_bench_prints_its_figures() -> None:
    result = subprocess.run(
        [sys.executable, "bench/notify_sweeps.py", "--jobs", "5", "--events", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "job sweep, 5 followed jobs: median" in result.stdout
    assert "idle sweep, demo workspace: median" in result.stdout
    assert "Event Grid delivery -> deliverer, 5 events: median" in result.stdout
