"""Domain types returned by the workspace port. No SDK type ever crosses the port."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.errors import WorkspaceError
from shared.secrets import find_secret
from shared.values import DatastoreKind


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Priority(enum.StrEnum):
    DEDICATED = "dedicated"
    LOW_PRIORITY = "low_priority"


class AzureCoordinates(_Frozen):
    """Where a workspace lives in Azure."""

    subscription_id: str
    resource_group: str
    workspace_name: str

    @property
    def workspace_scope(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    def compute_scope(self, compute_name: str) -> str:
        return f"{self.workspace_scope}/computes/{compute_name}"


class ClusterSpec(_Frozen):
    """A cluster as configuration describes it (what the local simulation creates)."""

    name: str
    vm_sku: str
    nodes: int = Field(ge=1, description="max_instances")
    min_nodes: int = 0
    priority: Priority = Priority.DEDICATED
    idle_seconds_before_scale_down: int = 120


class InstanceSpec(_Frozen):
    """A compute instance as configuration describes it (what the local simulation creates)."""

    name: str
    vm_sku: str
    assigned_to: str | None = None
    idle_shutdown_minutes: int | None = None


class ClusterInfo(_Frozen):
    name: str
    vm_size: str
    priority: Priority
    min_nodes: int
    max_nodes: int
    current_nodes: int
    # Azure's nodeStateCounts: idle, running, preparing, unusable, leaving, preempted.
    node_state_counts: dict[str, int] = Field(default_factory=dict)
    idle_seconds_before_scale_down: int | None = None
    allocation_state: str | None = None  # "Steady" | "Resizing"
    # When the cluster last had a job running (None: unknown). Used by idle detection.
    last_busy_at: datetime | None = None


class VmQuota(_Frozen):
    """The subscription's Azure ML core quota for a VM size's family in the workspace's region."""

    vm_size: str
    family: str  # Azure's name, e.g. standardNCSv3Family
    family_label: str | None = None  # e.g. "Standard NCSv3 Family Cores"
    location: str | None = None
    cores_per_node: int
    used_cores: int
    limit_cores: int

    @property
    def nodes_that_fit(self) -> int:
        """More nodes of this size the quota still allows."""
        if self.cores_per_node <= 0:
            return 0
        return max(self.limit_cores - self.used_cores, 0) // self.cores_per_node


class SpendToDate(_Frozen):
    """What Azure Cost Management says the workspace cost since the first of the month."""

    amount: float
    currency: str


class InstanceInfo(_Frozen):
    name: str
    vm_size: str
    state: str  # Azure's ComputeInstanceState: Running, Stopped, Starting, ...
    assigned_user: str | None = None
    idle_shutdown_minutes: int | None = None
    # When someone last used it. Only the simulation knows; Azure reports no such thing.
    last_activity_at: datetime | None = None
    # Azure's `lastOperation`: what was last done to it (Create, Start, Restart, Stop, ...),
    # when, and whether it succeeded. A running instance has run since its last Start.
    last_operation: str | None = None
    last_operation_at: datetime | None = None
    last_operation_status: str | None = None

    @property
    def running_since(self) -> datetime | None:
        """When it started running, as Azure's last operation tells; None if unknown."""
        if self.state != "Running" or self.last_operation_at is None:
            return None
        if (self.last_operation or "").lower() not in {"create", "start", "restart", "reimage"}:
            return None
        if (self.last_operation_status or "Succeeded").lower() != "succeeded":
            return None
        return self.last_operation_at


class ComputeInventory(_Frozen):
    clusters: list[ClusterInfo] = Field(default_factory=list)
    instances: list[InstanceInfo] = Field(default_factory=list)
    # Attached, Kubernetes and other kinds the bot lists but does not manage.
    others: dict[str, str] = Field(default_factory=dict)  # name -> kind

    def cluster(self, name: str) -> ClusterInfo | None:
        return next((c for c in self.clusters if c.name == name), None)


class DatastoreSpec(_Frozen):
    name: str
    kind: DatastoreKind
    account: str
    container: str
    description: str | None = None
    # A secret already sitting in a Key Vault named in configuration; None: identity-based.
    key_vault_secret: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class DatastoreInfo(_Frozen):
    name: str
    kind: str
    account: str | None = None
    container: str | None = None
    is_default: bool = False
    credentials: str = "identity"  # identity | account_key | sas | service_principal
    description: str | None = None
    # The bot tags what it registers with its request, so a retry can tell its own.
    tags: dict[str, str] = Field(default_factory=dict)


class JobSpec(_Frozen):
    """A command job. `name` is derived from the request so a retry submits nothing twice."""

    name: str
    compute: str
    environment: str
    command: str
    code: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    instance_count: int = 1
    # The job's limit in Azure (`limits.timeout`); None: none.
    timeout_seconds: int | None = None
    experiment: str = "amlbot"
    display_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class JobStatus(enum.StrEnum):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    STARTING = "Starting"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}

    @classmethod
    def parse(cls, raw: str | None) -> JobStatus:
        """Azure spells statuses in several casings (Event Grid sends 'completed')."""
        if not raw:
            return cls.UNKNOWN
        folded = raw.replace("_", "").replace(" ", "").lower()
        if folded == "cancelled":
            folded = "canceled"
        for status in cls:
            if status.value.lower() == folded:
                return status
        return cls.UNKNOWN


class JobInfo(_Frozen):
    name: str
    status: JobStatus
    compute: str | None = None
    experiment: str | None = None
    display_name: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    studio_url: str | None = None
    error: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    # Who submitted it, as Azure records it (`systemData.createdBy`: a user's object id or
    # principal name, or the bot's own identity for jobs the bot submitted).
    created_by: str | None = None


# How much of a failed job's log a message quotes: enough for the traceback's last frames and
# the exception, little enough to read in a chat message.
ERROR_LOG_TAIL_LINES = 20
ERROR_LOG_TAIL_CHARS = 1500


class JobOutcome(_Frozen):
    """What a workspace keeps about a job that has ended: when it ran, why it failed, and
    the last lines of the log that says so. Asked for once per job, when it ends.

    A job's log is its user's code talking, and Azure's error quotes it: a line that looks
    like a secret is withheld here, so no backend can pass one on to a chat message.
    """

    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    error_log_name: str | None = None  # e.g. user_logs/std_log.txt
    error_log_tail: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)

    @field_validator("error")
    @classmethod
    def _error_without_secrets(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return "\n".join(withhold_secret(line) for line in value.splitlines())

    @field_validator("error_log_tail")
    @classmethod
    def _short_tail_without_secrets(cls, lines: list[str]) -> list[str]:
        # Withholding keeps one line per line, so only the last ones need looking at.
        return last_lines([withhold_secret(line) for line in lines[-ERROR_LOG_TAIL_LINES:]])


def withhold_secret(line: str) -> str:
    """`line`, or a note in its place naming the kind of secret it seems to hold."""
    kind = find_secret(line)
    return line if kind is None else f"[line withheld: it looks like {kind}]"


def last_lines(
    lines: list[str],
    *,
    max_lines: int = ERROR_LOG_TAIL_LINES,
    max_chars: int = ERROR_LOG_TAIL_CHARS,
) -> list[str]:
    """The last lines of `lines` that fit `max_lines` and `max_chars` (newlines included);
    a last line longer than that on its own keeps its end, where the error usually is."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        if len(kept) == max_lines or used + len(line) + 1 > max_chars:
            break
        kept.append(line)
        used += len(line) + 1
    if not kept and lines:
        kept.append("…" + lines[-1][-(max_chars - 2) :])
    return kept[::-1]


class RoleGrantSpec(_Frozen):
    """A role assignment the bot makes for a time-bound access grant."""

    assignment_name: str  # deterministic UUID derived from the request
    principal_object_id: str
    role_name: str
    compute: str
    scope: str  # "compute" (the cluster's resource scope) or "workspace"
    mode: str = "rbac"  # "rbac" or "pim" (Azure ends the assignment itself)
    description: str
    expires_at: datetime


class GrantReceipt(_Frozen):
    assignment_id: str
    scope: str
    role_name: str
    note: str = ""


# What Azure accepts as a compute instance's idle shutdown (IdleShutdownSetting).
IDLE_SHUTDOWN_MIN_MINUTES = 15
IDLE_SHUTDOWN_MAX_MINUTES = 3 * 24 * 60


def check_idle_shutdown_minutes(name: str, minutes: int) -> None:
    """Raise `WorkspaceError` naming the instance and the range Azure allows."""
    if not IDLE_SHUTDOWN_MIN_MINUTES <= minutes <= IDLE_SHUTDOWN_MAX_MINUTES:
        raise WorkspaceError(
            f"The idle shutdown of compute instance {name} must be between "
            f"{IDLE_SHUTDOWN_MIN_MINUTES} and {IDLE_SHUTDOWN_MAX_MINUTES} minutes (3 days), "
            f"e.g. 30; {minutes} was asked for."
        )


class AccessAssignment(_Frozen):
    """A role assignment found at the workspace's scope or one of its computes' scopes."""

    assignment_name: str
    assignment_id: str
    principal_object_id: str
    role_name: str
    compute: str | None = None  # None: at the workspace's own scope
