"""bench/ack_latency.py still runs and says where the machine's CPUs went during a level:
the server's edge and workers, the load, the reply catcher, PostgreSQL, the rest."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench.ack_report import Level, print_cpu_split
from bench.proc_stats import CPU_USERS, cpu_snapshot
from tests.benches import run_bench


def test_the_split_is_each_ones_cores_and_the_rest_is_other_or_idle(
    capsys: pytest.CaptureFixture[str],
) -> None:
    level = Level("amlbot", 50, wall_s=2.0)
    level.cpu_s = {
        "edge": 1.2,
        "workers": 1.0,
        "load": 0.9,
        "catcher": 0.3,
        "postgres": 0.2,
        "machine": 3.8,  # 0.2 s more than the five named: the kernel, other programs
    }
    print_cpu_split([level])
    row = capsys.readouterr().out.splitlines()[-1].split()
    cpus = os.cpu_count() or 1
    idle = max(0.0, cpus - 1.9)
    assert row == ["amlbot", "50", "0.60", "0.50", "0.45", "0.15", "0.10", "0.10", f"{idle:.2f}"]


def test_a_snapshot_names_every_user_and_counts_this_process_as_the_load() -> None:
    before = cpu_snapshot(os.getpid())
    spent = sum(range(200_000))  # some CPU time of our own
    after = cpu_snapshot(os.getpid())
    cpu_s = after.spent_since(before)
    assert set(cpu_s) == set(CPU_USERS) and spent
    assert cpu_s["load"] > 0 and cpu_s["machine"] >= cpu_s["load"] - 0.05


def test_a_thread_that_ends_during_a_level_never_makes_its_user_read_negative() -> None:
    # As a PostgreSQL backend of another client does when it disconnects mid-level: a sum
    # per user would lose all the CPU the thread had spent before the level began.
    burned = threading.Event()
    finish = threading.Event()

    def burn() -> None:
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:
            pass
        burned.set()
        finish.wait()

    thread = threading.Thread(target=burn)
    thread.start()
    burned.wait()
    before = cpu_snapshot(os.getpid())
    finish.set()
    thread.join()
    cpu_s = cpu_snapshot(os.getpid()).spent_since(before)
    assert all(seconds >= 0 for seconds in cpu_s.values()), cpu_s
    assert cpu_s["load"] < 0.1  # the ended thread's earlier 0.2 s is not this level's


def test_the_ack_bench_prints_its_figures_and_where_the_cpus_went() -> None:
    out = run_bench(
        "ack_latency.py",
        *("--target", "amlbot", "--no-reference", "--concurrency", "5", "--requests", "30"),
        *("--warmup", "5", "--rounds", "1", "--reply-text"),
    )
    assert "where the CPUs went during each level" in out
    split = out.split("where the CPUs went during each level", 1)[1].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in split[2:4]}
    assert set(rows) == {"bare", "amlbot"}
    assert float(rows["bare"][1]) > 0 and float(rows["bare"][2]) == 0  # no workers
    assert float(rows["amlbot"][1]) > 0 and all(float(cores) >= 0 for cores in rows["amlbot"])
    assert "p99 ratio amlbot/bare" in out


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_idle_load_runs_at_idle_priority_and_is_gone_after() -> None:
    import asyncio

    from bench.ack_servers import start_idle_load, stop_idle_load

    async def start_look_stop() -> tuple[list[int], list[int | None]]:
        loops = await start_idle_load(2)
        deadline = time.monotonic() + 10
        policies = [os.sched_getscheduler(loop.pid) for loop in loops]
        while os.SCHED_IDLE not in policies or len(set(policies)) > 1:
            assert time.monotonic() < deadline, policies  # the interpreter starting
            await asyncio.sleep(0.05)
            policies = [os.sched_getscheduler(loop.pid) for loop in loops]
        await stop_idle_load(loops)
        return policies, [loop.returncode for loop in loops]

    policies, exits = asyncio.run(start_look_stop())
    assert policies == [os.SCHED_IDLE, os.SCHED_IDLE]
    assert all(code is not None for code in exits)
