"""Following jobs: each transition that matters reaches the requester (and watchers) exactly
once, in order, for one list call per workspace per sweep, with any number of sweepers."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from approvals.following.jobs import follow_jobs, record_job_status
from approvals.idle.spend import idle_spend_between
from approvals.scheduled import run_due
from approvals.tables import JobRow
from bot.wiring import Core
from shared.errors import TransientError
from tests.notify.conftest import (
    CountingBackend,
    job_notices,
    notices,
    replica_of,
    submit_job,
)
from workspaces.clock import ManualClock
from workspaces.port import WorkspaceBackend
from workspaces.types import JobInfo, JobOutcome, JobStatus

# The demo's cpu-cluster keeps one node warm: a default job queues 10 s, prepares 20 s,
# runs 2 min and finalizes 10 s, so it completes 2 min 40 s after submission.
RUNNING_AT = timedelta(seconds=35)
COMPLETED_AT = timedelta(seconds=170)


def sweep_at(core: Core, clock: ManualClock, start: datetime, offset: timedelta) -> int:
    clock.set(start + offset)
    return follow_jobs(core, clock.now(), idle_spend=idle_spend_between)


def test_a_job_is_announced_running_then_completed_exactly_once(
    core: Core, clock: ManualClock
) -> None:
    start = clock.now()
    name = submit_job(core)
    for offset in (5, 35, 60, 90, 170, 200, 400):
        sweep_at(core, clock, start, timedelta(seconds=offset))

    assert job_notices(core, name) == [
        ("alice", f"Job `{name}` is running on `cpu-cluster`."),
        ("alice", f"Job `{name}` completed on `cpu-cluster` (ran 2m10s, 2m40s after submission)."),
    ]
    completed = notices(core)[-1]
    assert "Metrics: accuracy=" in completed["text"]
    assert f"Studio: https://ml.azure.com/runs/{name}" in completed["text"]
    assert completed["request_id"] is not None  # threads under the request, or a DM
    with core.store.transaction() as session:
        job = session.query(JobRow).one()
        assert (job.status, job.following) == ("Completed", False)


def test_a_short_job_between_two_sweeps_is_announced_completed_only(
    core: Core, clock: ManualClock
) -> None:
    start = clock.now()
    name = submit_job(core)
    sweep_at(core, clock, start, timedelta(minutes=10))
    assert [text for _, text in job_notices(core, name)] == [
        f"Job `{name}` completed on `cpu-cluster` (ran 2m10s, 2m40s after submission)."
    ]


def test_a_failed_job_carries_azures_error(core: Core, clock: ManualClock) -> None:
    start = clock.now()
    name = submit_job(core, command="python train.py; exit 3")
    sweep_at(core, clock, start, timedelta(minutes=5))
    (failed,) = [p["text"] for p in notices(core) if name in p["text"]]
    assert failed.startswith(f"Job `{name}` failed on `cpu-cluster` (ran 30s,")
    assert "User process 'python' exited with status code 3" in failed
    assert "Studio: https://ml.azure.com/runs/" in failed


def test_a_canceled_job_is_announced_canceled(core: Core, clock: ManualClock) -> None:
    start = clock.now()
    name = submit_job(core)
    sweep_at(core, clock, start, RUNNING_AT)
    assert core.service.handle_text("alice", f"job cancel {name}").ok
    sweep_at(core, clock, start, RUNNING_AT + timedelta(seconds=30))
    assert [text for _, text in job_notices(core, name)] == [
        f"Job `{name}` is running on `cpu-cluster`.",
        f"Job `{name}` was canceled on `cpu-cluster`.",
    ]


def test_watchers_are_told_by_dm_and_the_requester_in_the_requests_thread(
    core: Core, clock: ManualClock
) -> None:
    start = clock.now()
    name = submit_job(core)
    assert core.service.handle_text("carol", f"job watch {name}").ok
    sweep_at(core, clock, start, COMPLETED_AT)
    by_person = {p["person"]: p for p in notices(core) if name in p["text"]}
    assert set(by_person) == {"alice", "carol"}
    assert by_person["alice"]["request_id"] is not None
    assert by_person["carol"].get("request_id") is None


def test_following_costs_one_list_call_per_workspace_per_sweep(
    core: Core, clock: ManualClock, counting: CountingBackend
) -> None:
    for _ in range(3):
        submit_job(core)
    counting.calls.clear()
    follow_jobs(core, clock.now() + RUNNING_AT, idle_spend=idle_spend_between)
    assert counting.calls == ["list_jobs"]


def test_a_round_of_the_sweeps_follows_each_workspaces_jobs_once(
    core: Core, clock: ManualClock, counting: CountingBackend
) -> None:
    """The round ran job following twice per workspace (once inline, once on the pool):
    twice the ARM reads, and the workspaces' polls one after another."""
    submit_job(core)
    counting.calls.clear()
    run_due(core, core.service.workflow, clock.now() + RUNNING_AT)
    assert counting.calls.count("list_jobs") == 1


def test_an_older_status_never_follows_a_newer_one(core: Core, clock: ManualClock) -> None:
    name = submit_job(core)
    with core.store.transaction() as session:
        job_id = session.query(JobRow.id).scalar()
    now = clock.now()
    assert record_job_status(
        core,
        job_id,
        JobInfo(name=name, status=JobStatus.COMPLETED),
        now,
        idle_spend=idle_spend_between,
    )
    assert not record_job_status(
        core,
        job_id,
        JobInfo(name=name, status=JobStatus.RUNNING),
        now,
        idle_spend=idle_spend_between,
    )
    assert not record_job_status(
        core,
        job_id,
        JobInfo(name=name, status=JobStatus.COMPLETED),
        now,
        idle_spend=idle_spend_between,
    )
    assert not record_job_status(
        core,
        job_id,
        JobInfo(name=name, status=JobStatus.UNKNOWN),
        now,
        idle_spend=idle_spend_between,
    )
    assert [text for _, text in job_notices(core, name)] == [f"Job `{name}` completed."]


def sweep_after(core: Core, barrier: threading.Barrier, clock: ManualClock) -> None:
    barrier.wait()
    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)


def test_sweepers_racing_on_two_replicas_announce_each_transition_once(
    core: Core, clock: ManualClock
) -> None:
    replica = replica_of(core)
    start = clock.now()
    names = [submit_job(core, person) for person in ("alice", "carol", "bob")]
    try:
        for offset in (timedelta(seconds=100), timedelta(minutes=10)):
            clock.set(start + offset)
            barrier = threading.Barrier(6)

            threads = [
                threading.Thread(target=sweep_after, args=(on, barrier, clock))
                for on in [core, replica] * 3
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        replica.store.engine.dispose()
    for name in names:
        assert [text.split(" on ")[0] for _, text in job_notices(core, name)] == [
            f"Job `{name}` is running",
            f"Job `{name}` completed",
        ]


class OutcomeBackend(CountingBackend):
    """The real backend, whose ended jobs come back with a given outcome (or failure)."""

    def __init__(self, inner: WorkspaceBackend, outcome: JobOutcome | Exception) -> None:
        super().__init__(inner)
        self.outcome = outcome

    def job_outcome(self, name: str) -> JobOutcome:
        self.calls.append("job_outcome")
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_an_ended_job_is_asked_for_its_outcome_once_and_a_running_one_never(
    core: Core, clock: ManualClock, counting: CountingBackend
) -> None:
    start = clock.now()
    name = submit_job(core)
    counting.calls.clear()
    for offset in (5, 35, 60, 90, 170, 200, 400):
        sweep_at(core, clock, start, timedelta(seconds=offset))
    with core.store.transaction() as session:
        job_id = session.query(JobRow.id).scalar()
    record_job_status(
        core,
        job_id,
        JobInfo(name=name, status=JobStatus.COMPLETED),
        clock.now(),
        idle_spend=idle_spend_between,
    )

    assert counting.calls == ["list_jobs"] * 5 + ["job_outcome"]


def test_a_failed_jobs_message_quotes_the_end_of_its_error_log(
    core: Core, clock: ManualClock
) -> None:
    start = clock.now()
    outcome = JobOutcome(
        started_at=start + timedelta(seconds=40),
        ended_at=start + timedelta(seconds=100),
        error_log_name="user_logs/std_log.txt",
        error_log_tail=["Traceback (most recent call last):", "ValueError: bad", "```"],
    )
    core.backends.install("demo", OutcomeBackend(core.backends("demo"), outcome))
    name = submit_job(core, command="python train.py; exit 3")

    sweep_at(core, clock, start, timedelta(minutes=5))

    (failed,) = [p["text"] for p in notices(core) if name in p["text"]]
    assert failed.startswith(
        f"Job `{name}` failed on `cpu-cluster` (ran 1m, 1m40s after submission).\n"
        "Error: Execution failed. User process 'python' exited with status code 3."
    )
    assert (
        "\nLast lines of user_logs/std_log.txt:\n"
        "```\nTraceback (most recent call last):\nValueError: bad\n'''\n```\nStudio: "
    ) in failed


@pytest.mark.parametrize(
    "failure",
    [TransientError("Azure could not be reached while reading the run history."), KeyError("x")],
)
def test_the_end_is_announced_when_its_outcome_cannot_be_had(
    core: Core, clock: ManualClock, caplog: pytest.LogCaptureFixture, failure: Exception
) -> None:
    core.backends.install("demo", OutcomeBackend(core.backends("demo"), failure))
    start = clock.now()
    name = submit_job(core)

    sweep_at(core, clock, start, COMPLETED_AT)
    sweep_at(core, clock, start, COMPLETED_AT + timedelta(minutes=1))

    assert [text for _, text in job_notices(core, name)] == [
        f"Job `{name}` completed on `cpu-cluster` (ran 2m10s, 2m40s after submission)."
    ]
    assert f"details of job {name}" in caplog.text
    assert "announced without them" in caplog.text


def test_a_completed_job_says_what_it_cost_and_the_months_spend(
    core: Core, clock: ManualClock
) -> None:
    start = clock.now()
    name = submit_job(core)
    sweep_at(core, clock, start, timedelta(minutes=5))
    (completed,) = [p["text"] for p in notices(core) if "completed" in p["text"]]
    # cpu-cluster is STANDARD_DS3_V2 at $0.293 a node-hour; the job ran 2m10s on one node.
    assert (
        "Cost: 1 node x $0.29/node-hour x 2m = $0.01; spend $0.01 this month "
        "(no budget set)" in completed
    ), completed
    assert name in completed
