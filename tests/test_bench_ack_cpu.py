"""bench/ack_cpu.py still runs both apps in-process and prints the CPU each spent per ack."""

from __future__ import annotations

import re

from tests.benches import run_bench


def test_it_prints_each_rounds_cpu_per_ack_and_the_medians() -> None:
    printed = run_bench("ack_cpu.py", "--requests", "300", "--rounds", "1")
    rows = re.findall(r"^\s+1  (bare|amlbot)\s+(\d+)\s+(\d+)$", printed, re.MULTILINE)
    assert sorted(target for target, _, _ in rows) == ["amlbot", "bare"]
    assert all(int(cpu) > 0 and int(wall) > 0 for _, cpu, wall in rows)
    medians = re.search(r"median cpu us/ack: bare (\d+), amlbot (\d+)", printed)
    assert medians is not None, printed
    # amlbot does everything the bare app does, and keeps the delivery besides.
    assert int(medians.group(2)) > int(medians.group(1))
