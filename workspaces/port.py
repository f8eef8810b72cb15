"""The one interface between the bot and an Azure ML workspace."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from workspaces.types import (
    ComputeInventory,
    DatastoreInfo,
    DatastoreSpec,
    GrantReceipt,
    JobInfo,
    JobOutcome,
    JobSpec,
    RoleGrantSpec,
)


@runtime_checkable
class WorkspaceBackend(Protocol):
    """Everything the bot does in one workspace. Implementations raise `WorkspaceError`s.

    Every mutating call is idempotent on its deterministic name: granting the same
    `assignment_name` twice, or submitting the same job name twice, changes nothing.
    """

    def list_computes(self) -> ComputeInventory: ...

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt: ...

    def revoke_cluster_access(self, grant: RoleGrantSpec) -> None:
        """Remove the assignment. A grant already gone counts as revoked."""
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
