"""`bench/slack_outage.py` in short: real threads, the wall clock, a 2 s + 2 s outage."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "slack_outage.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_slack_outage", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_a_short_outage_on_the_wall_clock_delivers_everything_exactly_once(
    tmp_path: Path,
) -> None:
    """How soon after recovery is a figure the bench prints, and a bound the manual-clock
    tests in test_delivery_outage.py assert; here, on real time, only what cannot be timing."""
    figures = load_bench().run_outage(
        messages=30, rate_limited=2.0, failing=2.0, retry_after=1, workers=2, folder=tmp_path
    )

    assert figures.delivered == 30
    assert figures.duplicates == 0 and figures.dead == 0
