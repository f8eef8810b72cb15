"""The one interface between the bot and an Azure ML workspace."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from workspaces.types import (
    AccessAssignment,
    ComputeInventory,
    DatastoreInfo,
    DatastoreSpec,
    GrantReceipt,
    JobInfo,
    JobOutcome,
    JobSpec,
    RoleGrantSpec,
    SpendToDate,
    VmQuota,
)


@runtime_checkable
class WorkspaceBackend(Protocol):
    """Everything the bot does in one workspace. Implementations raise `WorkspaceError`s.

    Every mutating call is idempotent on its deterministic name: granting the same
    `assignment_name` twice, or submitting the same job name twice, changes nothing.
    """

    def list_computes(self) -> ComputeInventory: ...

    def vm_quota(self, vm_size: str) -> VmQuota | None:
        """The core quota and usage of `vm_size`'s family in the workspace's region; None
        if the region does not offer the size."""
        ...

    def month_to_date_cost(self) -> SpendToDate | None:
        """The workspace's actual cost this month from Azure Cost Management; None where
        there is none to ask (the simulated workspace)."""
        ...

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt: ...

    def revoke_cluster_access(self, grant: RoleGrantSpec) -> None:
        """Remove the assignment. A grant already gone counts as revoked."""
        ...

    def extend_cluster_access(self, grant: RoleGrantSpec, new_expiry: datetime) -> GrantReceipt:
        """Make the assignment last until `new_expiry` (`grant.expires_at` is its end now).

        Only a time-bound (PIM) assignment changes in Azure; the bot itself revokes the
        others at expiry. Raises `NotFoundError` if the assignment is gone. Idempotent on
        (`assignment_name`, `new_expiry`): a retry extends nothing twice.
        """
        ...

    def list_access_assignments(self, role_name: str) -> list[AccessAssignment]:
        """Assignments of `role_name` at the workspace's scope and its computes' scopes, to
        anyone (what the drift check compares with the bot's grants)."""
        ...

    def access_assignment_exists(self, grant: RoleGrantSpec) -> bool:
        """Read back whether the grant's assignment is still there (after a revocation)."""
        ...

    def list_datastores(self) -> list[DatastoreInfo]: ...

    def register_datastore(self, spec: DatastoreSpec) -> DatastoreInfo:
        """Register a new datastore; raise `ConflictError` if the name is taken."""
        ...

    def list_environments(self) -> list[str]: ...

    def submit_job(self, spec: JobSpec) -> JobInfo: ...

    def get_job(self, name: str) -> JobInfo: ...

    def list_jobs(self, *, tag_filter: dict[str, str] | None = None) -> list[JobInfo]:
        """Jobs in the workspace, newest first, narrowed to those carrying all tags given."""
        ...

    def cancel_job(self, name: str) -> JobInfo: ...

    def job_outcome(self, name: str) -> JobOutcome:
        """When an ended job ran, why it failed and the end of its error log.

        Costlier than `get_job` (on Azure, a call to the run history and one to the log's
        blob): callers ask once per job, when it has ended, never on every poll.
        """
        ...

    def stop_instance(self, name: str) -> None: ...

    def set_cluster_min_nodes(self, name: str, min_nodes: int) -> None: ...

    def set_cluster_idle_time(self, name: str, seconds: int) -> None:
        """How long a cluster's idle nodes wait before scaling down."""
        ...
