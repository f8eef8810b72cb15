"""How many worker processes `amlbot serve` starts: what the container may use, not the
machine's CPU count, unless AMLBOT_WORK_PROCESSES says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.processes import usable_cpus, work_processes
from bot.settings import Settings


def affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def test_a_cgroup_v2_quota_of_one_and_a_half_cpus_allows_two(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(tmp_path) == min(2, affinity())


def test_no_cgroup_v2_quota_leaves_the_affinity(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == affinity()


def test_a_cgroup_v1_quota_counts_too(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1


def test_no_cgroup_files_leave_the_affinity(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path / "missing") == affinity()


POSTGRES = "postgresql+psycopg://db/amlbot"


def test_the_setting_wins_over_the_cpus() -> None:
    assert work_processes(Settings(work_processes=3), POSTGRES) == 3


def test_zero_serves_the_edge_alone() -> None:
    assert work_processes(Settings(work_processes=0), POSTGRES) == 0


def test_by_default_one_per_cpu_from_one_to_four() -> None:
    assert 1 <= work_processes(Settings(), POSTGRES) <= 4


def test_on_sqlite_one_worker_process_claims_at_most() -> None:
    assert work_processes(Settings(), "sqlite:///x.sqlite3") == 1
    assert work_processes(Settings(work_processes=3), "sqlite:///x.sqlite3") == 1
    assert work_processes(Settings(work_processes=0), "sqlite:///x.sqlite3") == 0


def test_the_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLBOT_WORK_PROCESSES", "-1")
    with pytest.raises(ValidationError, match="AMLBOT_WORK_PROCESSES"):
        Settings()


def test_a_bad_setting_is_an_error_that_names_the_variable_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    monkeypatch.setenv("AMLBOT_WORK_PROCESSES", "two")
    assert main(["serve", "--http"]) == 2
    err = capsys.readouterr().err
    assert "AMLBOT_WORK_PROCESSES='two': Input should be a valid integer" in err
    assert "Traceback" not in err
