"""Running a benchmark of `bench/` as its users do, for the tests that check it still runs
and prints its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *arguments: str) -> str:
    """What `bench/SCRIPT ARGUMENTS...` printed; fails the test if it exited non-zero."""
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
