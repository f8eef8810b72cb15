"""How many worker processes `amlbot serve` starts: what the container may use, not the
machine's CPU count, unless AMLBOT_WORK_PROCESSES says."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.processes import (
    WorkerChildren,
    _in_child,
    give_way_to_the_edge,
    usable_cpus,
    work_processes,
)
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


def _child_priority(priority: str) -> tuple[int, int]:
    """(scheduling policy, niceness) of a `serve` child started with `priority`, a
    stand-in for `amlbot work` that only sleeps."""
    children = WorkerChildren(1, None, priority=priority)  # type: ignore[arg-type]
    children.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    children.start()
    try:
        [child] = children._children
        assert child is not None
        return os.sched_getscheduler(child.pid), os.getpriority(os.PRIO_PROCESS, child.pid)
    finally:
        children.stop()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_serve_children_run_only_on_cpu_the_edge_leaves_by_default() -> None:
    assert Settings().work_priority == "idle"
    policy, _ = _child_priority("idle")
    assert policy == os.SCHED_IDLE


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_low_priority_children_keep_a_share_at_nice_10() -> None:
    policy, niceness = _child_priority("low")
    assert policy == os.SCHED_OTHER
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)


def test_where_lowering_the_priority_is_refused_the_worker_keeps_the_parents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*_: object) -> None:
        raise PermissionError("not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refused)
    monkeypatch.setattr(os, "nice", refused)
    assert give_way_to_the_edge("idle") == "unchanged"


def test_a_bad_work_priority_names_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    monkeypatch.setenv("AMLBOT_WORK_PRIORITY", "urgent")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "AMLBOT_WORK_PRIORITY='urgent'" in err and "'idle' or 'low'" in err
    assert "Traceback" not in err


def test_the_work_priority_may_be_given_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLBOT_WORK_PRIORITY", " LOW ")
    assert Settings().work_priority == "low"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_whose_parent_died_before_it_could_ask_for_the_signal_ends_at_once() -> None:
    """The parent killed between the fork and the child's `prctl`: no signal will come, and
    the child (adopted by then) would run on for ever. It ends before running anything."""
    not_its_parent = os.getppid()  # the child's parent is this test process, not that one
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        preexec_fn=functools.partial(_in_child, "low", not_its_parent),
    )
    try:
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_whose_parent_lives_runs() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        preexec_fn=functools.partial(_in_child, "low", os.getpid()),
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    finally:
        child.kill()
        child.wait()
