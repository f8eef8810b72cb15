"""The simulated workspace, specified by what a caller of the port sees over time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from shared.errors import ConflictError, NotFoundError, WorkspaceError
from shared.values import DatastoreKind
from workspaces.clock import ManualClock
from workspaces.local import LocalWorkspace
from workspaces.port import WorkspaceBackend
from workspaces.types import (
    ClusterInfo,
    ClusterSpec,
    DatastoreSpec,
    InstanceSpec,
    JobSpec,
    JobStatus,
    Priority,
    RoleGrantSpec,
)

WORKSPACE_SCOPE = (
    "/subscriptions/local/resourceGroups/local"
    "/providers/Microsoft.MachineLearningServices/workspaces/demo"
)
CLUSTERS = [
    ClusterSpec(
        name="gpu-cluster",
        vm_sku="STANDARD_NC6s_v3",
        nodes=2,
        priority=Priority.LOW_PRIORITY,
        idle_seconds_before_scale_down=120,
    ),
    ClusterSpec(name="cpu-cluster", vm_sku="STANDARD_DS3_V2", nodes=4, min_nodes=1),
]
INSTANCES = [InstanceSpec(name="alice-notebook", vm_sku="STANDARD_DS11_V2", assigned_to="alice")]

MakeWorkspace = Callable[..., LocalWorkspace]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    yield engine
    engine.dispose()


@pytest.fixture
def make_workspace(engine: Engine, clock: ManualClock) -> MakeWorkspace:
    def make(
        name: str = "demo",
        clusters: list[ClusterSpec] | None = None,
        environments: list[str] | None = None,
    ) -> LocalWorkspace:
        return LocalWorkspace(
            engine,
            name,
            CLUSTERS if clusters is None else clusters,
            INSTANCES,
            clock,
            environments=environments,
        )

    return make


@pytest.fixture
def ws(make_workspace: MakeWorkspace) -> LocalWorkspace:
    return make_workspace()


def job(name: str = "job-1", command: str = "python train.py", **fields: object) -> JobSpec:
    values: dict[str, object] = {
        "name": name,
        "compute": "gpu-cluster",
        "environment": "azureml:AzureML-sklearn-1.5@latest",
        "command": command,
    }
    values.update(fields)
    return JobSpec.model_validate(values)


def grant(assignment_name: str = "a1", **fields: object) -> RoleGrantSpec:
    values: dict[str, object] = {
        "assignment_name": assignment_name,
        "principal_object_id": "11111111-1111-4111-8111-111111111111",
        "role_name": "AzureML Data Scientist",
        "compute": "gpu-cluster",
        "scope": "compute",
        "description": "amlbot request #1 for alice",
        "expires_at": datetime(2026, 1, 5, 11, 0, tzinfo=UTC),
    }
    values.update(fields)
    return RoleGrantSpec.model_validate(values)


def gpu(ws: LocalWorkspace) -> ClusterInfo:
    cluster = ws.list_computes().cluster("gpu-cluster")
    assert cluster is not None
    return cluster


def status_after(ws: LocalWorkspace, clock: ManualClock, seconds: float, name: str) -> JobStatus:
    clock.advance(timedelta(seconds=seconds))
    return ws.get_job(name).status


# -- the port ------------------------------------------------------------------------------


def test_local_workspace_satisfies_the_workspace_port(ws: LocalWorkspace) -> None:
    assert isinstance(ws, WorkspaceBackend)


# -- datastores ----------------------------------------------------------------------------


def test_a_new_workspace_has_the_four_default_datastores_with_identity_access(
    ws: LocalWorkspace,
) -> None:
    stores = {store.name: store for store in ws.list_datastores()}

    assert set(stores) == {
        "workspaceblobstore",
        "workspacefilestore",
        "workspaceartifactstore",
        "workspaceworkingdirectory",
    }
    assert [name for name, store in stores.items() if store.is_default] == ["workspaceblobstore"]
    assert stores["workspacefilestore"].kind == "file"
    assert {store.credentials for store in stores.values()} == {"identity"}


def test_registered_datastores_are_listed_by_name(ws: LocalWorkspace) -> None:
    registered = ws.register_datastore(
        DatastoreSpec(
            name="trainingdata",
            kind=DatastoreKind.ADLS_GEN2,
            account="contosodata",
            container="training",
            description="curated training sets",
        )
    )

    names = [store.name for store in ws.list_datastores()]
    assert names == sorted(names)
    assert registered in ws.list_datastores()
    assert (registered.kind, registered.credentials) == ("adls-gen2", "identity")


def test_a_datastore_with_a_key_vault_secret_records_only_the_kind_of_credential(
    ws: LocalWorkspace,
) -> None:
    registered = ws.register_datastore(
        DatastoreSpec(
            name="legacy",
            kind=DatastoreKind.BLOB,
            account="oldstore",
            container="c",
            key_vault_secret="legacy-sas",
        )
    )

    assert registered.credentials == "key_vault_secret"


def test_registering_a_taken_datastore_name_is_a_conflict(ws: LocalWorkspace) -> None:
    spec = DatastoreSpec(
        name="workspaceblobstore", kind=DatastoreKind.BLOB, account="a", container="c"
    )

    with pytest.raises(ConflictError, match="workspaceblobstore already exists in workspace demo"):
        ws.register_datastore(spec)


# -- environments --------------------------------------------------------------------------


def test_environments_default_to_curated_ones(ws: LocalWorkspace) -> None:
    assert "AzureML-sklearn-1.5@latest" in ws.list_environments()


def test_environments_come_from_configuration_when_given(make_workspace: MakeWorkspace) -> None:
    ws = make_workspace(environments=["AzureML-lightgbm-3.3@latest"])

    assert ws.list_environments() == ["AzureML-lightgbm-3.3@latest"]


# -- jobs ----------------------------------------------------------------------------------


def test_a_job_on_a_cold_cluster_queues_prepares_runs_finalizes_and_completes(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    submitted = ws.submit_job(job())

    assert submitted.status is JobStatus.QUEUED
    assert status_after(ws, clock, 59, "job-1") is JobStatus.QUEUED  # scaling up
    assert status_after(ws, clock, 1, "job-1") is JobStatus.PREPARING
    assert status_after(ws, clock, 20, "job-1") is JobStatus.RUNNING
    assert status_after(ws, clock, 119, "job-1") is JobStatus.RUNNING
    assert status_after(ws, clock, 1, "job-1") is JobStatus.FINALIZING
    assert status_after(ws, clock, 10, "job-1") is JobStatus.COMPLETED


def test_a_completed_job_reports_its_times_metrics_and_studio_link(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    submitted_at = clock.now()
    ws.submit_job(job())
    clock.advance(timedelta(minutes=10))

    done = ws.get_job("job-1")

    assert done.created_at == submitted_at
    assert done.started_at == submitted_at + timedelta(seconds=80)
    assert done.ended_at == submitted_at + timedelta(seconds=210)
    assert 0.9 <= done.metrics["accuracy"] < 1
    assert done.metrics == ws.get_job("job-1").metrics
    assert done.studio_url == f"https://ml.azure.com/runs/job-1?wsid={WORKSPACE_SCOPE}"
    assert done.error is None


def test_sleep_in_the_command_sets_how_long_the_job_runs(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job(command="sleep 600 && python train.py"))

    assert status_after(ws, clock, 80 + 599, "job-1") is JobStatus.RUNNING
    assert status_after(ws, clock, 1, "job-1") is JobStatus.FINALIZING


def test_a_command_that_asks_to_fail_ends_failed_with_azures_message(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job(command="python train.py --fail"))
    clock.advance(timedelta(minutes=5))

    failed = ws.get_job("job-1")

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith(
        "Execution failed. User process 'python' exited with status code 1."
    )
    assert failed.metrics == {}


def test_an_ended_jobs_outcome_is_what_the_simulation_knows_and_a_made_up_log(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    submitted_at = clock.now()
    ws.submit_job(job(command="python train.py --fail"))
    clock.advance(timedelta(minutes=5))

    outcome = ws.job_outcome("job-1")

    failed = ws.get_job("job-1")
    assert (outcome.started_at, outcome.ended_at) == (failed.started_at, failed.ended_at)
    assert outcome.ended_at is not None and outcome.ended_at > submitted_at
    assert outcome.error == failed.error
    assert outcome.error_log_name == "user_logs/std_log.txt"
    assert outcome.error_log_tail == [
        "[simulated workspace: no command ran; this log is made up]",
        "Running: python train.py --fail",
        "python exited with status code 1",
    ]


def test_a_completed_jobs_outcome_quotes_no_log(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job(command="python train.py"))
    clock.advance(timedelta(hours=2))

    outcome = ws.job_outcome("job-1")

    assert (outcome.error_log_name, outcome.error_log_tail) == (None, [])
    assert outcome.metrics == ws.get_job("job-1").metrics != {}


def test_exit_with_a_code_fails_with_that_code(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job(command="bash run.sh; exit 3"))
    clock.advance(timedelta(minutes=5))

    assert "User process 'bash' exited with status code 3" in (ws.get_job("job-1").error or "")


def test_the_command_is_read_but_never_run(
    ws: LocalWorkspace, clock: ManualClock, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    ws.submit_job(job(command=f"touch {marker}"))
    clock.advance(timedelta(hours=1))

    assert ws.get_job("job-1").status is JobStatus.COMPLETED
    assert not marker.exists()


def test_cancel_moves_a_running_job_to_canceled(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job())
    clock.advance(timedelta(seconds=100))

    canceled = ws.cancel_job("job-1")
    clock.advance(timedelta(hours=1))

    assert canceled.status is JobStatus.CANCELED
    assert ws.get_job("job-1").status is JobStatus.CANCELED
    assert ws.get_job("job-1").ended_at == canceled.ended_at


def test_a_finished_job_cannot_be_canceled(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job())
    clock.advance(timedelta(hours=1))

    with pytest.raises(ConflictError, match=r"already ended \(Completed\)"):
        ws.cancel_job("job-1")


def test_submitting_an_existing_name_returns_the_first_job_unchanged(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    first = ws.submit_job(job())
    clock.advance(timedelta(seconds=30))

    again = ws.submit_job(job(command="python other.py --fail"))

    assert again.created_at == first.created_at
    assert len(ws.list_jobs()) == 1
    clock.advance(timedelta(hours=1))
    assert ws.get_job("job-1").status is JobStatus.COMPLETED


def test_an_unknown_job_is_not_found_naming_job_and_workspace(ws: LocalWorkspace) -> None:
    with pytest.raises(NotFoundError, match="no job `nope` in workspace `demo`"):
        ws.get_job("nope")


def test_a_job_on_an_unknown_compute_is_not_found(ws: LocalWorkspace) -> None:
    with pytest.raises(NotFoundError, match=r"`tpu-cluster`.*Clusters here: cpu-cluster, gpu"):
        ws.submit_job(job(compute="tpu-cluster"))


def test_a_job_on_a_compute_instance_is_refused_with_the_reason(ws: LocalWorkspace) -> None:
    with pytest.raises(WorkspaceError, match="`alice-notebook` is a compute instance"):
        ws.submit_job(job(compute="alice-notebook"))


def test_a_job_asking_for_more_nodes_than_the_cluster_has_is_refused(ws: LocalWorkspace) -> None:
    with pytest.raises(WorkspaceError, match=r"asks for 3 nodes.*1 to 2 nodes"):
        ws.submit_job(job(instance_count=3))


def test_jobs_are_listed_newest_first_and_narrowed_by_tags(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job("older", tags={"amlbot": "true", "amlbot-requester": "alice"}))
    clock.advance(timedelta(seconds=1))
    ws.submit_job(job("newer", tags={"amlbot": "true", "amlbot-requester": "carol"}))

    assert [j.name for j in ws.list_jobs()] == ["newer", "older"]
    assert [j.name for j in ws.list_jobs(tag_filter={"amlbot-requester": "alice"})] == ["older"]


def test_a_job_waits_in_the_queue_while_the_cluster_is_full(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job("big", instance_count=2))
    ws.submit_job(job("next"))

    assert status_after(ws, clock, 200, "next") is JobStatus.QUEUED
    # "big" ends at 210 s and leaves its nodes warm, so "next" starts 10 s later.
    assert status_after(ws, clock, 19, "next") is JobStatus.QUEUED
    assert status_after(ws, clock, 1, "next") is JobStatus.PREPARING


def test_canceling_the_job_ahead_lets_a_waiting_job_start(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job("big", instance_count=2))
    ws.submit_job(job("next"))
    clock.advance(timedelta(seconds=100))

    ws.cancel_job("big")

    assert status_after(ws, clock, 10, "next") is JobStatus.PREPARING


# -- clusters ------------------------------------------------------------------------------


def test_an_unused_cluster_with_no_minimum_has_no_nodes(ws: LocalWorkspace) -> None:
    cluster = gpu(ws)

    assert (cluster.current_nodes, cluster.allocation_state) == (0, "Steady")
    assert cluster.last_busy_at is None


def test_a_cluster_scales_up_for_a_job(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job(instance_count=2))
    clock.advance(timedelta(seconds=30))

    allocating = gpu(ws)
    clock.advance(timedelta(seconds=60))
    running = gpu(ws)

    assert allocating.allocation_state == "Resizing"
    assert allocating.node_state_counts["preparing"] == 2
    assert running.allocation_state == "Steady"
    assert (running.current_nodes, running.node_state_counts["running"]) == (2, 2)


def test_nodes_stay_up_idle_after_the_last_job_until_the_idle_time_passes(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job())
    clock.advance(timedelta(seconds=210))
    ended_at = clock.now()

    clock.advance(timedelta(seconds=119))
    idle = gpu(ws)
    clock.advance(timedelta(seconds=1))
    scaled_down = gpu(ws)

    assert (idle.current_nodes, idle.node_state_counts["idle"]) == (1, 1)
    assert idle.last_busy_at == ended_at
    assert (scaled_down.current_nodes, scaled_down.last_busy_at) == (0, ended_at)


def test_a_job_on_warm_nodes_skips_the_scale_up(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job("first"))
    clock.advance(timedelta(seconds=260))

    ws.submit_job(job("second"))

    assert status_after(ws, clock, 10, "second") is JobStatus.PREPARING


def test_a_busy_cluster_reports_itself_busy_now(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.submit_job(job())
    clock.advance(timedelta(seconds=100))

    assert gpu(ws).last_busy_at == clock.now()


def test_a_cluster_with_a_minimum_above_zero_keeps_idle_nodes_up(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    clock.advance(timedelta(days=3))

    cpu = ws.list_computes().cluster("cpu-cluster")

    assert cpu is not None
    assert (cpu.min_nodes, cpu.current_nodes, cpu.node_state_counts["idle"]) == (1, 1, 1)


def test_lowering_the_minimum_scales_down_after_the_idle_time(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.set_cluster_min_nodes("cpu-cluster", 0)

    def cpu_nodes_after(seconds: int) -> int:
        clock.advance(timedelta(seconds=seconds))
        cpu = ws.list_computes().cluster("cpu-cluster")
        assert cpu is not None
        return cpu.current_nodes

    assert cpu_nodes_after(119) == 1
    assert cpu_nodes_after(1) == 0


def test_a_minimum_outside_zero_to_max_is_refused(ws: LocalWorkspace) -> None:
    with pytest.raises(WorkspaceError, match="between 0 and its maximum, 2; 3 was asked for"):
        ws.set_cluster_min_nodes("gpu-cluster", 3)


def test_a_minimum_set_through_the_port_survives_reconfiguration(
    ws: LocalWorkspace, make_workspace: MakeWorkspace
) -> None:
    ws.set_cluster_min_nodes("cpu-cluster", 0)
    resized = [
        CLUSTERS[0],
        CLUSTERS[1].model_copy(update={"nodes": 8, "vm_sku": "STANDARD_D4S_V3"}),
    ]

    cpu = make_workspace(clusters=resized).list_computes().cluster("cpu-cluster")

    assert cpu is not None
    assert (cpu.min_nodes, cpu.max_nodes, cpu.vm_size) == (0, 8, "STANDARD_D4S_V3")


# -- instances -----------------------------------------------------------------------------


def test_instances_start_running_with_activity_at_seed_time(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    (instance,) = ws.list_computes().instances

    assert (instance.state, instance.last_activity_at) == ("Running", clock.now())
    assert instance.assigned_user == "alice"


def test_stopping_an_instance_twice_leaves_it_stopped(ws: LocalWorkspace) -> None:
    ws.stop_instance("alice-notebook")
    ws.stop_instance("alice-notebook")

    assert [i.state for i in ws.list_computes().instances] == ["Stopped"]


def test_stopping_an_unknown_instance_is_not_found(ws: LocalWorkspace) -> None:
    with pytest.raises(NotFoundError, match="no compute instance named `bob-notebook`"):
        ws.stop_instance("bob-notebook")


# -- access --------------------------------------------------------------------------------


def test_a_grant_is_assigned_at_the_clusters_azure_scope(ws: LocalWorkspace) -> None:
    receipt = ws.grant_cluster_access(grant())

    assert receipt.scope == f"{WORKSPACE_SCOPE}/computes/gpu-cluster"
    assert receipt.assignment_id == (
        f"{receipt.scope}/providers/Microsoft.Authorization/roleAssignments/a1"
    )
    assert receipt.note
    assert [a.assignment_id for a in ws.role_assignments()] == [receipt.assignment_id]


def test_a_workspace_scoped_grant_is_assigned_at_the_workspace(ws: LocalWorkspace) -> None:
    assert ws.grant_cluster_access(grant(scope="workspace")).scope == WORKSPACE_SCOPE


def test_granting_the_same_assignment_twice_leaves_one(ws: LocalWorkspace) -> None:
    first = ws.grant_cluster_access(grant())
    second = ws.grant_cluster_access(grant())

    assert second.assignment_id == first.assignment_id
    assert len(ws.role_assignments()) == 1


def test_granting_on_an_unknown_cluster_is_not_found(ws: LocalWorkspace) -> None:
    with pytest.raises(NotFoundError, match="tpu-cluster"):
        ws.grant_cluster_access(grant(compute="tpu-cluster"))


def test_revoking_twice_counts_as_revoked(ws: LocalWorkspace) -> None:
    ws.grant_cluster_access(grant())

    ws.revoke_cluster_access(grant())
    ws.revoke_cluster_access(grant())

    assert ws.role_assignments() == []


def test_a_pim_assignment_ends_by_itself(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.grant_cluster_access(grant(mode="pim"))
    clock.advance(timedelta(hours=2))

    assert ws.role_assignments() == []


def test_extending_a_pim_assignment_moves_its_end(ws: LocalWorkspace, clock: ManualClock) -> None:
    ws.grant_cluster_access(grant(mode="pim"))
    new_end = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)

    ws.extend_cluster_access(grant(mode="pim"), new_end)
    ws.extend_cluster_access(grant(mode="pim"), new_end)  # a retry changes nothing more

    clock.advance(timedelta(hours=3))
    assert [a.expires_at for a in ws.role_assignments()] == [new_end]
    clock.advance(timedelta(hours=1))
    assert ws.role_assignments() == []


def test_extending_an_assignment_already_gone_is_not_found(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.grant_cluster_access(grant(mode="pim"))
    clock.advance(timedelta(hours=2))  # PIM ended it

    with pytest.raises(NotFoundError, match="Ask for access again"):
        ws.extend_cluster_access(grant(mode="pim"), datetime(2026, 1, 5, 13, 0, tzinfo=UTC))
    with pytest.raises(NotFoundError):
        ws.extend_cluster_access(grant("never-made"), datetime(2026, 1, 5, 13, 0, tzinfo=UTC))


# -- persistence ---------------------------------------------------------------------------


def test_state_survives_a_new_local_workspace_on_the_same_database(
    ws: LocalWorkspace, make_workspace: MakeWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job())
    ws.grant_cluster_access(grant())
    ws.stop_instance("alice-notebook")
    ws.register_datastore(
        DatastoreSpec(name="trainingdata", kind=DatastoreKind.BLOB, account="a", container="c")
    )
    clock.advance(timedelta(hours=1))

    reopened = make_workspace()

    assert reopened.get_job("job-1").status is JobStatus.COMPLETED
    assert len(reopened.role_assignments()) == 1
    assert [i.state for i in reopened.list_computes().instances] == ["Stopped"]
    assert len(reopened.list_datastores()) == 5


def test_workspaces_sharing_a_database_see_only_their_own_state(
    ws: LocalWorkspace, make_workspace: MakeWorkspace
) -> None:
    other = make_workspace("prod")
    ws.submit_job(job())
    ws.grant_cluster_access(grant())

    assert other.list_jobs() == []
    assert other.role_assignments() == []
    assert len(other.list_datastores()) == 4


# -- on every supported database, under concurrency ----------------------------------------


@pytest.fixture
def any_engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def run_together(count: int, action: Callable[[int], object]) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            action(index)
        except BaseException as exc:  # a thread cannot raise into the test; report it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_workspaces_starting_together_on_a_fresh_database_seed_once(
    database_url: str, clock: ManualClock
) -> None:
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        errors = run_together(
            4, lambda i: LocalWorkspace(engines[i], "demo", CLUSTERS, INSTANCES, clock)
        )
        datastores = LocalWorkspace(
            engines[0], "demo", CLUSTERS, INSTANCES, clock
        ).list_datastores()
    finally:
        for engine in engines:
            engine.dispose()

    assert errors == []
    assert len(datastores) == 4


def test_concurrent_submissions_never_plan_on_the_same_free_nodes(
    any_engine: Engine, clock: ManualClock
) -> None:
    ws = LocalWorkspace(any_engine, "demo", CLUSTERS, INSTANCES, clock)

    errors = run_together(4, lambda i: ws.submit_job(job(f"job-{i}")))
    clock.advance(timedelta(seconds=60))

    assert errors == []
    statuses = sorted(j.status.value for j in ws.list_jobs())
    assert statuses == ["Preparing", "Preparing", "Queued", "Queued"]
    assert gpu(ws).current_nodes == 2


def test_concurrent_submissions_of_one_name_create_one_job(
    any_engine: Engine, clock: ManualClock
) -> None:
    ws = LocalWorkspace(any_engine, "demo", CLUSTERS, INSTANCES, clock)

    errors = run_together(6, lambda _: ws.submit_job(job()))

    assert errors == []
    assert [j.name for j in ws.list_jobs()] == ["job-1"]


def idle_nodes_after(ws: LocalWorkspace, clock: ManualClock, seconds: int) -> int:
    clock.advance(timedelta(seconds=seconds))
    return gpu(ws).current_nodes


def test_an_idle_time_set_through_the_port_is_listed(ws: LocalWorkspace) -> None:
    ws.set_cluster_idle_time("gpu-cluster", 600)

    assert gpu(ws).idle_seconds_before_scale_down == 600


def test_a_shorter_idle_time_scales_down_at_once_the_nodes_idle_longer(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.set_cluster_idle_time("gpu-cluster", 3600)
    ws.submit_job(job())
    clock.advance(timedelta(seconds=210))  # the job has ended; its node idles
    assert idle_nodes_after(ws, clock, 600) == 1

    ws.set_cluster_idle_time("gpu-cluster", 120)

    assert gpu(ws).current_nodes == 0


def test_a_longer_idle_time_keeps_a_node_that_is_still_up_for_the_new_time(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job())
    clock.advance(timedelta(seconds=210 + 60))  # idle for 60 s of the 120 s

    ws.set_cluster_idle_time("gpu-cluster", 600)

    assert idle_nodes_after(ws, clock, 539) == 1
    assert idle_nodes_after(ws, clock, 1) == 0


def test_a_longer_idle_time_does_not_bring_back_nodes_already_scaled_down(
    ws: LocalWorkspace, clock: ManualClock
) -> None:
    ws.submit_job(job())
    clock.advance(timedelta(seconds=210 + 200))  # scaled down 80 s ago

    ws.set_cluster_idle_time("gpu-cluster", 3600)

    assert gpu(ws).current_nodes == 0


def test_a_negative_idle_time_is_refused(ws: LocalWorkspace) -> None:
    with pytest.raises(WorkspaceError, match="cannot be negative; -1 seconds was asked for"):
        ws.set_cluster_idle_time("gpu-cluster", -1)


def test_an_idle_time_of_an_unknown_cluster_is_not_found(ws: LocalWorkspace) -> None:
    with pytest.raises(NotFoundError):
        ws.set_cluster_idle_time("tpu-cluster", 120)


def test_an_idle_time_set_through_the_port_survives_reconfiguration(
    ws: LocalWorkspace, make_workspace: MakeWorkspace
) -> None:
    ws.set_cluster_idle_time("gpu-cluster", 300)
    longer = [CLUSTERS[0].model_copy(update={"idle_seconds_before_scale_down": 1800}), CLUSTERS[1]]

    cluster = make_workspace(clusters=longer).list_computes().cluster("gpu-cluster")

    assert cluster is not None and cluster.idle_seconds_before_scale_down == 300


def test_an_idle_time_changed_in_configuration_is_applied(
    ws: LocalWorkspace, make_workspace: MakeWorkspace
) -> None:
    longer = [CLUSTERS[0].model_copy(update={"idle_seconds_before_scale_down": 1800}), CLUSTERS[1]]

    cluster = make_workspace(clusters=longer).list_computes().cluster("gpu-cluster")

    assert cluster is not None and cluster.idle_seconds_before_scale_down == 1800


def test_a_state_file_from_an_earlier_amlbot_gains_the_columns_added_since(
    any_engine: Engine, clock: ManualClock
) -> None:
    from sqlalchemy import inspect, text

    LocalWorkspace(any_engine, "demo", CLUSTERS, INSTANCES, clock)
    # As the simulation's tables were before the idle-time columns came.
    with any_engine.begin() as connection:
        for column in ("idle_seconds_pinned", "idle_changed_at", "idle_floor"):
            connection.execute(text(f"ALTER TABLE sim_clusters DROP COLUMN {column}"))

    reopened = LocalWorkspace(any_engine, "demo", CLUSTERS, INSTANCES, clock)
    reopened.set_cluster_idle_time("cpu-cluster", 300)

    columns = {c["name"] for c in inspect(any_engine).get_columns("sim_clusters")}
    assert {"idle_seconds_pinned", "idle_changed_at", "idle_floor"} <= columns
    [cpu] = [c for c in reopened.list_computes().clusters if c.name == "cpu-cluster"]
    assert cpu.idle_seconds_before_scale_down == 300


def test_listing_compute_reads_outside_a_transaction_on_postgresql(
    database_url: str, clock: ManualClock
) -> None:
    """On PostgreSQL every reply of `compute list` would otherwise also wait for a BEGIN and
    a ROLLBACK; the listing is the same either way."""
    from sqlalchemy import event

    from approvals.store import make_engine

    engine = make_engine(database_url)
    try:
        ws = LocalWorkspace(engine, "demo", CLUSTERS, INSTANCES, clock)
        ws.submit_job(job())
        in_transaction: list[bool] = []

        @event.listens_for(engine, "before_cursor_execute")
        def _seen(conn, cursor, statement, parameters, context, many):  # type: ignore[no-untyped-def]
            driver = conn.connection.dbapi_connection
            in_transaction.append(not getattr(driver, "autocommit", False))

        inventory = ws.list_computes()

        assert sorted(c.name for c in inventory.clusters) == sorted(c.name for c in CLUSTERS)
        assert [i.name for i in inventory.instances] == [i.name for i in INSTANCES]
        assert len(in_transaction) == 4  # clusters, jobs, last release, instances
        postgres = engine.dialect.name == "postgresql"
        assert in_transaction == [not postgres] * 4
    finally:
        engine.dispose()
