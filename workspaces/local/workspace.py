"""A simulated Azure ML workspace on this machine, persisted in the bot's database.

It behaves like a workspace as far as the bot can see: default datastores, clusters that
scale with their jobs, jobs that move through Azure's states as the clock moves (timing in
`timeline`), role assignments at Azure-shaped scopes. It never runs a job's command:
it reads the text to decide how long the job runs and whether it fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import ConflictError, NotFoundError, WorkspaceError
from workspaces.clock import Clock
from workspaces.local import access as sim_access
from workspaces.local import jobs as sim_jobs
from workspaces.local.access import RoleAssignment
from workspaces.local.instances import INSTANCES_IN_WORKSPACE, instance_info
from workspaces.local.quota import simulated_quota
from workspaces.local.seed import seed_workspace
from workspaces.local.tables import (
    SimDatastoreRow,
    SimInstanceRow,
    SimJobRow,
    SimWorkspaceRow,
    create_simulator_tables,
)
from workspaces.local.timeline import STD_LOG
from workspaces.types import (
    AccessAssignment,
    AzureCoordinates,
    ClusterSpec,
    ComputeInventory,
    DatastoreInfo,
    DatastoreSpec,
    GrantReceipt,
    InstanceSpec,
    JobInfo,
    JobOutcome,
    JobSpec,
    JobStatus,
    RoleGrantSpec,
    SpendToDate,
    VmQuota,
    check_idle_shutdown_minutes,
)

DEFAULT_ENVIRONMENTS = [
    "AzureML-sklearn-1.5@latest",
    "AzureML-lightgbm-3.3@latest",
    "AzureML-acpt-pytorch-2.2-cuda12.1@latest",
    "AzureML-tensorflow-2.16-cuda12@latest",
    "AzureML-minimal-ubuntu22.04-py39-cpu-inference@latest",
]


class LocalWorkspace:
    """One simulated workspace. Safe to share between threads, and processes may share its
    database: every call is one transaction, and changes take turns per workspace."""

    def __init__(
        self,
        engine: Engine,
        workspace: str,
        clusters: list[ClusterSpec],
        instances: list[InstanceSpec],
        clock: Clock,
        environments: list[str] | None = None,
        latency: float = 0.0,
        coordinates: AzureCoordinates | None = None,
    ) -> None:
        """`coordinates`: where the simulated workspace stands in for one in Azure (the
        configuration's `azure:`), so its studio links and scopes name that workspace."""
        for spec in clusters:
            if not 0 <= spec.min_nodes <= spec.nodes:
                raise ValueError(
                    f"cluster {spec.name}: min_nodes {spec.min_nodes} must be 0..{spec.nodes}"
                )
        self.workspace = workspace
        self.coordinates = coordinates or AzureCoordinates(
            subscription_id="local", resource_group="local", workspace_name=workspace
        )
        self._clock = clock
        # Seconds each change takes, half before and half after it is made, like an Azure
        # call whose answer is still on its way: for demos and for crash tests, whose
        # kills must land mid-call.
        self._latency = latency
        self._environments = list(environments) if environments else list(DEFAULT_ENVIRONMENTS)
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        create_simulator_tables(engine)
        self._seed(clusters, instances)

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _changing(self) -> Iterator[Session]:
        """A transaction that first takes this workspace's turn, so changes never interleave.

        The lock also makes every later read in the transaction current: on PostgreSQL the
        row lock queues other writers of this workspace, on SQLite the write lock queues all.
        """
        with self._sessions.begin() as session:
            session.execute(
                update(SimWorkspaceRow)
                .where(SimWorkspaceRow.workspace == self.workspace)
                .values(revision=SimWorkspaceRow.revision + 1)
                .execution_options(synchronize_session=False)
            )
            yield session

    def _seed(self, clusters: list[ClusterSpec], instances: list[InstanceSpec]) -> None:
        now = self._clock.now()
        try:
            with self._sessions.begin() as session:
                if session.get(SimWorkspaceRow, self.workspace) is None:
                    session.add(SimWorkspaceRow(workspace=self.workspace, seeded_at=now))
        except IntegrityError:
            pass  # another process created it first; the seeding below is idempotent
        with self._changing() as session:
            seed_workspace(session, self.workspace, clusters, instances, now)

    # -- computes ------------------------------------------------------------------------

    def list_computes(self) -> ComputeInventory:
        now = self._clock.now()
        # Core rows on a plain connection, not the ORM: see `sim_jobs.cluster_infos`. On
        # PostgreSQL outside a transaction: a listing needs no snapshot across its four
        # reads, and BEGIN and ROLLBACK would be two more round trips for every reply.
        connection = self._engine.connect()
        if self._engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        with connection:
            clusters = sim_jobs.cluster_infos(connection, self.workspace, now)
            instances = connection.execute(
                INSTANCES_IN_WORKSPACE, {"workspace": self.workspace}
            ).all()
        return ComputeInventory(
            clusters=clusters, instances=[instance_info(row, now) for row in instances]
        )

    def month_to_date_cost(self) -> SpendToDate | None:
        return None  # no bill to ask: the bot's own records stand in

    def vm_quota(self, vm_size: str) -> VmQuota | None:
        return simulated_quota(vm_size, self.list_computes(), None)

    def stop_instance(self, name: str) -> None:
        with self._changing() as session:
            row = session.get(SimInstanceRow, (self.workspace, name))
            if row is None:
                raise NotFoundError(
                    f"There is no compute instance named `{name}` in workspace `{self.workspace}`."
                )
            row.state = "Stopped"

    def set_cluster_min_nodes(self, name: str, min_nodes: int) -> None:
        now = self._clock.now()
        with self._changing() as session:
            row = sim_jobs.find_cluster(session, self.workspace, name)
            if not 0 <= min_nodes <= row.max_nodes:
                raise WorkspaceError(
                    f"The minimum node count of cluster `{name}` must be between 0 and its "
                    f"maximum, {row.max_nodes}; {min_nodes} was asked for."
                )
            row.change_min_nodes(min_nodes, now)
            row.min_nodes_pinned = True

    def set_cluster_idle_time(self, name: str, seconds: int) -> None:
        now = self._clock.now()
        with self._changing() as session:
            row = sim_jobs.find_cluster(session, self.workspace, name)
            if seconds < 0:
                raise WorkspaceError(
                    f"The idle time before scale-down of cluster `{name}` cannot be negative; "
                    f"{seconds} seconds was asked for."
                )
            row.change_idle_seconds(seconds, now)
            row.idle_seconds_pinned = True

    def set_instance_idle_shutdown(self, name: str, minutes: int) -> None:
        check_idle_shutdown_minutes(name, minutes)
        with self._changing() as session:
            row = session.get(SimInstanceRow, (self.workspace, name))
            if row is None:
                raise NotFoundError(
                    f"There is no compute instance named `{name}` in workspace `{self.workspace}`."
                )
            row.idle_shutdown_minutes = minutes

    @contextmanager
    def _slowly(self) -> Iterator[None]:
        if self._latency:
            time.sleep(self._latency / 2)
        yield
        if self._latency:
            time.sleep(self._latency / 2)

    # -- access --------------------------------------------------------------------------

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        scope = self._scope(grant)
        with self._slowly(), self._changing() as session:
            sim_jobs.find_cluster(session, self.workspace, grant.compute)
            return sim_access.grant(session, self.workspace, grant, scope, self._clock.now())

    def revoke_cluster_access(self, grant: RoleGrantSpec) -> None:
        with self._slowly(), self._changing() as session:
            sim_access.revoke(session, self.workspace, grant)

    def extend_cluster_access(self, grant: RoleGrantSpec, new_expiry: datetime) -> GrantReceipt:
        with self._changing() as session:
            return sim_access.extend(session, self.workspace, grant, new_expiry, self._clock.now())

    def list_access_assignments(self, role_name: str) -> list[AccessAssignment]:
        workspace = self.coordinates.workspace_scope
        return [
            AccessAssignment(
                assignment_name=a.assignment_name,
                assignment_id=a.assignment_id,
                principal_object_id=a.principal_object_id,
                role_name=a.role_name,
                compute=None if a.scope == workspace else a.compute,
            )
            for a in self.role_assignments()
            if a.role_name == role_name
        ]

    def access_assignment_exists(self, grant: RoleGrantSpec) -> bool:
        return any(a.assignment_name == grant.assignment_name for a in self.role_assignments())

    def role_assignments(self) -> list[RoleAssignment]:
        """The role assignments in force now; time-bound (PIM) ones vanish at their end."""
        with self._reading() as session:
            return sim_access.in_force(session, self.workspace, self._clock.now())

    def _scope(self, grant: RoleGrantSpec) -> str:
        if grant.scope == "compute":
            return self.coordinates.compute_scope(grant.compute)
        if grant.scope == "workspace":
            return self.coordinates.workspace_scope
        raise WorkspaceError(
            f"Unknown role assignment scope '{grant.scope}'; use 'compute' or 'workspace'."
        )

    # -- datastores and environments -----------------------------------------------------

    def list_datastores(self) -> list[DatastoreInfo]:
        with self._reading() as session:
            rows = session.scalars(
                select(SimDatastoreRow)
                .where(SimDatastoreRow.workspace == self.workspace)
                .order_by(SimDatastoreRow.name)
            ).all()
        return [_datastore_info(row) for row in rows]

    def register_datastore(self, spec: DatastoreSpec) -> DatastoreInfo:
        now = self._clock.now()
        with self._slowly(), self._changing() as session:
            if session.get(SimDatastoreRow, (self.workspace, spec.name)) is not None:
                raise ConflictError(
                    f"A datastore named {spec.name} already exists in workspace "
                    f"{self.workspace}; pick another name or use it."
                )
            row = SimDatastoreRow(
                workspace=self.workspace,
                name=spec.name,
                kind=spec.kind.value,
                account=spec.account,
                container=spec.container,
                is_default=False,
                # Only which kind of credential: the secret stays in the Key Vault.
                credentials="key_vault_secret" if spec.key_vault_secret else "identity",
                description=spec.description,
                tags=dict(spec.tags),
                created_at=now,
            )
            session.add(row)
        return _datastore_info(row)

    def list_environments(self) -> list[str]:
        return list(self._environments)

    # -- jobs ----------------------------------------------------------------------------

    def submit_job(self, spec: JobSpec) -> JobInfo:
        now = self._clock.now()
        with self._slowly(), self._changing() as session:
            row = sim_jobs.submit(session, self.workspace, spec, now)
        return self._job_info(row, now)

    def submit_job_directly(self, spec: JobSpec, created_by: str) -> JobInfo:
        """A job someone submits themselves (SDK, CLI, studio), not through the bot: the
        simulation's stand-in for a person's own `ml_client.jobs.create_or_update`."""
        now = self._clock.now()
        with self._changing() as session:
            row = sim_jobs.submit(session, self.workspace, spec, now, created_by=created_by)
        return self._job_info(row, now)

    def get_job(self, name: str) -> JobInfo:
        now = self._clock.now()
        with self._reading() as session:
            row = sim_jobs.find_job(session, self.workspace, name)
        return self._job_info(row, now)

    def list_jobs(self, *, tag_filter: dict[str, str] | None = None) -> list[JobInfo]:
        now = self._clock.now()
        with self._reading() as session:
            rows = session.scalars(
                select(SimJobRow)
                .where(SimJobRow.workspace == self.workspace)
                .order_by(SimJobRow.created_at.desc(), SimJobRow.id.desc())
            ).all()
        wanted = (tag_filter or {}).items()
        return [self._job_info(row, now) for row in rows if wanted <= row.tags.items()]

    def cancel_job(self, name: str) -> JobInfo:
        now = self._clock.now()
        with self._changing() as session:
            row = sim_jobs.cancel(session, self.workspace, name, now)
        return self._job_info(row, now)

    def job_outcome(self, name: str) -> JobOutcome:
        """What the simulation knows of an ended job; a failed one gets the end of a log as
        Azure's would read, made up (it never runs the command) and saying so."""
        now = self._clock.now()
        with self._reading() as session:
            row = sim_jobs.find_job(session, self.workspace, name)
        info = self._job_info(row, now)
        failed = info.status is JobStatus.FAILED
        return JobOutcome(
            started_at=info.started_at,
            ended_at=info.ended_at,
            error=info.error,
            metrics=info.metrics,
            error_log_name=STD_LOG if failed else None,
            error_log_tail=sim_jobs.simulated_log_tail(row) if failed else [],
        )

    def _job_info(self, row: SimJobRow, now: datetime) -> JobInfo:
        return sim_jobs.job_info(row, now, self.coordinates.workspace_scope)


def _datastore_info(row: SimDatastoreRow) -> DatastoreInfo:
    return DatastoreInfo(
        name=row.name,
        kind=row.kind,
        account=row.account,
        container=row.container,
        is_default=row.is_default,
        credentials=row.credentials,
        description=row.description,
        tags=dict(row.tags or {}),
    )
