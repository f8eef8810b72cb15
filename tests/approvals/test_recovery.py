"""Nothing in flight is stranded: a request whose process died with its side effect under
way is finished by the sweeps once its lease runs out, on SQLite and PostgreSQL alike.

A process dying is a `ProcessDied` (a BaseException, so no handler of the bot's catches it)
raised by a backend right after the real simulated workspace made the change: the case
where Azure answered and the bot never wrote down what it made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from approvals import leases
from approvals.config import AppConfig
from approvals.scheduled import run_due
from approvals.states import RequestStatus, transition
from approvals.tables import GrantRow, JobRow, OutboxRow, RequestRow
from bot.wiring import Core
from shared.errors import TransientError
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace
from workspaces.port import WorkspaceBackend
from workspaces.types import (
    DatastoreInfo,
    DatastoreSpec,
    GrantReceipt,
    JobInfo,
    JobSpec,
    RoleGrantSpec,
)

ENV = "azureml:AzureML-sklearn-1.5@latest"
PAST_THE_LEASE = leases.LEASE + timedelta(seconds=1)


class ProcessDied(BaseException):
    """The process being killed: nothing in the bot catches it."""


class DiesAfterTheChange:
    """The simulated workspace, in a process that dies just after Azure answered."""

    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        self.inner.grant_cluster_access(grant)
        raise ProcessDied

    def submit_job(self, spec: JobSpec) -> JobInfo:
        self.inner.submit_job(spec)
        raise ProcessDied

    def register_datastore(self, spec: DatastoreSpec) -> DatastoreInfo:
        self.inner.register_datastore(spec)
        raise ProcessDied

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Failing:
    """The simulated workspace whose grants fail with `errors`, one per call, then work."""

    def __init__(self, inner: WorkspaceBackend, errors: list[BaseException]) -> None:
        self.inner = inner
        self.errors = errors

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.grant_cluster_access(grant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def simulated(core: Core) -> LocalWorkspace:
    backend = core.backends("demo")
    assert isinstance(backend, LocalWorkspace)
    return backend


def dies_during(core: Core, act: Callable[[], object]) -> None:
    """Run `act` in a process that dies once the workspace made its change; the next
    process (same database, same simulated workspace) has the plain backend again."""
    real = simulated(core)
    core.backends.install("demo", DiesAfterTheChange(real))  # type: ignore[arg-type]
    with pytest.raises(ProcessDied):
        act()
    core.backends.install("demo", real)


def ask(core: Core, who: str, text: str) -> int:
    reply = core.service.handle_text(who, text)
    assert reply.ok and reply.request_id is not None, reply.text
    return reply.request_id


def ask_access(core: Core) -> int:
    return ask(core, "alice", '/aml access request gpu-cluster --for 2h --reason "fine-tune"')


def request(core: Core, request_id: int) -> RequestRow:
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        return row


def grants(core: Core) -> list[GrantRow]:
    with core.store.transaction() as session:
        return list(session.scalars(select(GrantRow)))


def notices_to(core: Core, person: str, request_id: int) -> list[str]:
    with core.store.transaction() as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.kind == "person.notice"))
        return [
            row.payload["text"]
            for row in rows
            if row.payload["person"] == person and row.payload.get("request_id") == request_id
        ]


def granted_but_not_recorded(core: Core) -> int:
    request_id = ask_access(core)
    dies_during(core, lambda: core.service.handle_text("bob", f"/aml approve {request_id}"))
    assert request(core, request_id).status == RequestStatus.EXECUTING
    assert len(simulated(core).role_assignments()) == 1 and grants(core) == []
    return request_id


def test_a_grant_made_in_azure_before_the_process_died_is_recorded_by_the_sweep(
    core: Core, clock: ManualClock
) -> None:
    request_id = granted_but_not_recorded(core)
    # the lease may still be held
    assert run_due(core, core.service.workflow, clock.now()).resumed == []

    clock.advance(PAST_THE_LEASE)
    report = run_due(core, core.service.workflow, clock.now())

    assert report.resumed == [request_id] and report.changed
    assert request(core, request_id).status == RequestStatus.SUCCEEDED
    [assignment] = simulated(core).role_assignments()
    [grant] = grants(core)
    assert (grant.request_id, grant.assignment_name) == (request_id, assignment.assignment_name)
    [outcome] = notices_to(core, "alice", request_id)
    assert "done: alice has access to `gpu-cluster`" in outcome
    assert run_due(core, core.service.workflow, clock.now() + PAST_THE_LEASE).resumed == []


def test_a_job_submitted_before_the_process_died_is_followed_and_reported_once(
    core: Core, clock: ManualClock
) -> None:
    submit = f'/aml job submit --compute gpu-cluster --environment {ENV} --command "python t.py"'
    dies_during(core, lambda: core.service.handle_text("bob", submit))
    with core.store.transaction() as session:
        request_id = session.scalars(select(RequestRow.id)).one()
    assert request(core, request_id).status == RequestStatus.EXECUTING

    clock.advance(PAST_THE_LEASE)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    done = request(core, request_id)
    assert done.status == RequestStatus.SUCCEEDED
    submitted = simulated(core).list_jobs(tag_filter={"amlbot-request": str(request_id)})
    assert [job.name for job in submitted] == [done.result and done.result["job"]]
    with core.store.transaction() as session:
        assert [row.name for row in session.scalars(select(JobRow))] == [submitted[0].name]
    # Policy ran it at once, but the reply died with the process: the asker is told.
    [outcome] = notices_to(core, "bob", request_id)
    assert f"Job `{submitted[0].name}` submitted" in outcome


def test_a_datastore_registered_before_the_process_died_is_reported_registered(
    core: Core, clock: ManualClock
) -> None:
    request_id = ask(
        core,
        "alice",
        "/aml datastore register trainingdata --kind blob --account contosodata "
        "--container training",
    )
    dies_during(core, lambda: core.service.handle_text("bob", f"/aml approve {request_id}"))

    clock.advance(PAST_THE_LEASE)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    assert request(core, request_id).status == RequestStatus.SUCCEEDED, request(core, request_id)
    names = [d.name for d in simulated(core).list_datastores()]
    assert names.count("trainingdata") == 1
    [outcome] = notices_to(core, "alice", request_id)
    assert "datastore `trainingdata` is registered" in outcome


def test_a_datastore_of_the_same_name_made_by_someone_else_still_fails_the_resumed_request(
    core: Core, clock: ManualClock
) -> None:
    request_id = ask(
        core,
        "alice",
        "/aml datastore register trainingdata --kind blob --account contosodata "
        "--container training",
    )
    with core.store.transaction() as session:
        transition(session, request_id, RequestStatus.PENDING, RequestStatus.APPROVED)
        transition(session, request_id, RequestStatus.APPROVED, RequestStatus.EXECUTING)
    simulated(core).register_datastore(
        DatastoreSpec(name="trainingdata", kind="blob", account="other", container="c")
    )

    # no lease: from before leases
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    failed = request(core, request_id)
    assert failed.status == RequestStatus.FAILED and "already exists" in (failed.error or "")


def test_a_request_approved_by_a_process_that_died_before_acting_is_carried_out(
    core: Core, clock: ManualClock
) -> None:
    request_id = ask_access(core)
    with core.store.transaction() as session:
        transition(
            session,
            request_id,
            RequestStatus.PENDING,
            RequestStatus.APPROVED,
            decided_by="bob",
            decided_at=clock.now(),
            **leases.taken(clock.now(), "replica-that-died"),
        )

    clock.advance(PAST_THE_LEASE)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    assert request(core, request_id).status == RequestStatus.SUCCEEDED
    assert len(grants(core)) == 1 and len(simulated(core).role_assignments()) == 1
    assert len(notices_to(core, "alice", request_id)) == 1


def test_two_replicas_sweeping_at_once_resume_a_request_once(
    database_url: str, make_core: Callable[..., Core], demo_config: AppConfig, clock: ManualClock
) -> None:
    replicas = [make_core(demo_config, database_url) for _ in range(2)]
    request_id = granted_but_not_recorded(replicas[0])
    clock.advance(PAST_THE_LEASE)
    start = threading.Barrier(2)
    resumed: list[list[int]] = []

    def sweep(core: Core) -> None:
        start.wait()
        resumed.append(run_due(core, core.service.workflow, clock.now()).resumed)

    threads = [threading.Thread(target=sweep, args=(core,)) for core in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(resumed) == [[], [request_id]]
    core = replicas[1]
    assert request(core, request_id).status == RequestStatus.SUCCEEDED
    assert len(simulated(core).role_assignments()) == 1 and len(grants(core)) == 1
    assert len(notices_to(core, "alice", request_id)) == 1


class Slow:
    """The simulated workspace whose grant takes as long as the test says."""

    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner
        self.started = threading.Event()
        self.finish = threading.Event()
        self.grants = 0

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        self.grants += 1
        self.started.set()
        assert self.finish.wait(timeout=30)
        return self.inner.grant_cluster_access(grant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_heartbeat_keeps_a_slow_carry_out_from_being_taken_over(
    database_url: str, make_core: Callable[..., Core], demo_config: AppConfig, clock: ManualClock
) -> None:
    busy, other = make_core(demo_config, database_url), make_core(demo_config, database_url)
    busy.service.workflow.heartbeat_every = 0.02  # wall-clock seconds: the test is quick
    request_id = ask_access(busy)
    slow = Slow(simulated(busy))
    busy.backends.install("demo", slow)  # type: ignore[arg-type]
    approving = threading.Thread(
        target=busy.service.handle_text, args=("bob", f"/aml approve {request_id}")
    )
    approving.start()
    try:
        assert slow.started.wait(timeout=30)
        clock.advance(leases.LEASE * 4)  # Azure is slow: minutes pass
        deadline = time.monotonic() + 10
        while (request(other, request_id).lease_until or clock.now()) <= clock.now():
            assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
            time.sleep(0.01)

        assert run_due(other, other.service.workflow, clock.now()).resumed == []
    finally:
        slow.finish.set()
        approving.join(timeout=30)
    assert request(other, request_id).status == RequestStatus.SUCCEEDED
    assert slow.grants == 1 and len(grants(other)) == 1


def test_a_passing_azure_failure_is_retried_by_the_sweep_and_reported_once(
    core: Core, clock: ManualClock
) -> None:
    request_id = ask_access(core)
    core.backends.install(
        "demo",
        Failing(simulated(core), [TransientError("Azure had a temporary failure (503).")]),  # type: ignore[arg-type]
    )

    reply = core.service.handle_text("bob", f"/aml approve {request_id}")

    assert reply.ok and "temporary failure (503)" in reply.text and "retried" in reply.text
    assert request(core, request_id).status == RequestStatus.EXECUTING
    assert notices_to(core, "alice", request_id) == []
    clock.advance(PAST_THE_LEASE)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]
    done = request(core, request_id)
    assert (done.status, done.error, done.attempts) == (RequestStatus.SUCCEEDED, None, 2)
    assert len(grants(core)) == 1 and len(notices_to(core, "alice", request_id)) == 1


def test_a_failure_that_keeps_passing_fails_plainly_after_the_last_attempt(
    core: Core, clock: ManualClock
) -> None:
    request_id = ask_access(core)
    attempts = core.service.workflow.max_attempts
    errors: list[BaseException] = [TransientError("Azure timed out.") for _ in range(attempts)]
    core.backends.install("demo", Failing(simulated(core), errors))  # type: ignore[arg-type]
    core.service.handle_text("bob", f"/aml approve {request_id}")

    for _ in range(attempts):
        clock.advance(leases.LEASE * attempts)
        run_due(core, core.service.workflow, clock.now())

    failed = request(core, request_id)
    assert (failed.status, failed.error, failed.attempts) == (
        RequestStatus.FAILED,
        "Azure timed out.",
        attempts,
    )
    assert notices_to(core, "alice", request_id) == [
        f"Request #{request_id} (access to gpu-cluster for 2h) failed: Azure timed out."
    ]


def test_an_unexpected_error_in_a_resumed_carry_out_fails_it_with_an_error_id(
    core: Core, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = granted_but_not_recorded(core)
    core.backends.install("demo", Failing(simulated(core), [KeyError("surprise")]))  # type: ignore[arg-type]

    clock.advance(PAST_THE_LEASE)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    failed = request(core, request_id)
    assert failed.status == RequestStatus.FAILED and "error id" in (failed.error or "")
    error_id = (failed.error or "").split("error id ")[1][:8]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
    assert len(notices_to(core, "alice", request_id)) == 1


def test_a_request_whose_every_resumption_dies_is_given_up_plainly(
    core: Core, clock: ManualClock
) -> None:
    request_id = granted_but_not_recorded(core)
    for _ in range(core.service.workflow.max_attempts - 1):
        clock.advance(PAST_THE_LEASE)
        dies_during(core, lambda: run_due(core, core.service.workflow, clock.now()))

    clock.advance(PAST_THE_LEASE)
    assert run_due(core, core.service.workflow, clock.now()).resumed == [request_id]

    failed = request(core, request_id)
    assert failed.status == RequestStatus.FAILED and "gave up" in (failed.error or "")
    assert len(notices_to(core, "alice", request_id)) == 1


def test_a_leads_second_approve_says_a_live_carry_out_is_under_way(core: Core) -> None:
    request_id = granted_but_not_recorded(core)

    again = core.service.handle_text("bob", f"/aml approve {request_id}")

    assert not again.ok
    assert "being carried out" in again.text and "resumes it automatically" in again.text
    assert request(core, request_id).status == RequestStatus.EXECUTING


def test_a_leads_second_approve_resumes_an_interrupted_carry_out(
    core: Core, clock: ManualClock
) -> None:
    request_id = granted_but_not_recorded(core)
    clock.advance(PAST_THE_LEASE)

    again = core.service.handle_text("bob", f"/aml approve {request_id}")

    assert again.ok and "interrupted" in again.text and "resumed it now" in again.text
    assert request(core, request_id).status == RequestStatus.SUCCEEDED
    assert len(grants(core)) == 1 and len(simulated(core).role_assignments()) == 1
    assert len(notices_to(core, "alice", request_id)) == 1
    assert run_due(core, core.service.workflow, clock.now() + PAST_THE_LEASE).resumed == []
