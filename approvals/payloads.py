"""What each action's request carries, typed: one pydantic model per action, told apart by
`action` (a discriminated union, `RequestPayload`).

Writers build the model (`AccessPayload(cluster=..., ...)`) and hand it to the workflow;
`RequestRow.payload` (approvals/tables.py) is typed as `RequestPayload`: its column type
stores `model_dump(mode="json")` in the JSON column, and loading a row reads it back
through `load_payload` with the row's `action` column as the discriminator. So every reader
gets the model (`row.payload.cluster`) and tells actions apart with `isinstance`; nothing
indexes a dict.

The risk facts an access or job request was decided on (the rule, the estimate, the
budget line, the capacity) are modelled on `Assessed`, which those two payloads extend;
the stored JSON keeps them at the top level, the shape older versions wrote and read.

Rows written by older versions still load: their JSON has no `action` key (the column
says it), may lack fields added since (each has a default), and may carry keys nothing
reads any more (a drift fix's `azure`/`configured`, a review's `emergency`), which are
ignored. A payload that does not fit fails with a `UserError` naming the request and
the field.

This module imports nothing of the store's, so `approvals.tables` can depend on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from approvals.rule_models import RuleDecision
from shared.errors import UserError
from shared.values import DatastoreKind


class _Payload(BaseModel):
    # "ignore": a row written by an older version may carry keys no longer read.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CostEstimate(_Payload):
    """The estimate shown when the request was asked."""

    usd: float | None  # None: the VM size's price is unknown
    explain: str
    # Where the prices came from; requests asked before prices named it have none.
    source: str | None = None


class RuleFacts(_Payload):
    """The workspace rule that decided the request (`approvals/rules.py`)."""

    name: str
    decide: RuleDecision
    headline: str
    # A group under `groups:` that decides instead of the workspace's leads.
    approvers: str | None = None


class Assessed(_Payload):
    """What an access or job request was decided on (`approvals/service_risk.py`), kept
    so its card shows it; the rule's approver group also decides who may approve."""

    estimate: CostEstimate | None = None
    rule: RuleFacts | None = None
    budget_line: str | None = None  # the month's spend against the budget
    capacity: str | None = None  # GPU requests: the family's quota and free nodes


class AccessPayload(Assessed):
    action: Literal["access"] = "access"
    cluster: str
    duration_seconds: float
    # Ends when the work on the cluster is done (at the latest after the duration).
    until_done: bool = False
    # The active grant this request pushes out, instead of making a second assignment.
    extends_grant: int | None = None
    # Break-glass (approvals/break_glass.py): self-approved in an emergency, and the
    # request a lead reviews it by.
    emergency: bool = False
    review_request: int | None = None


class DatastorePayload(_Payload):
    action: Literal["datastore"] = "datastore"
    name: str
    store_kind: DatastoreKind
    account: str
    container: str
    description: str | None = None


class JobPayload(Assessed):
    action: Literal["job"] = "job"
    compute: str
    environment: str
    command: str
    code: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    instances: int = 1
    max_duration_seconds: float | None = None
    experiment: str | None = None
    name: str | None = None  # the display name the person chose
    # Approved as this job alone: the requester has no access to the cluster, and
    # approving grants none.
    job_alone: bool = False


ComputeOperation = Literal["stop_instance", "set_min_nodes", "set_idle_time", "set_idle_shutdown"]


class ComputePayload(_Payload):
    action: Literal["compute"] = "compute"
    operation: ComputeOperation
    compute: str
    min_nodes: int | None = None
    idle_seconds: int | None = None
    idle_shutdown_minutes: int | None = None
    # The card's title and what it does in Azure, as worded when it was asked.
    title: str | None = None
    description: str | None = None


class DriftPayload(_Payload):
    action: Literal["drift"] = "drift"
    operation: Literal["revoke_assignment", "regrant", "set_min_nodes", "set_idle_time"]
    finding_id: int
    kind: str | None = None  # the finding's kind (approvals/drift.py), as found
    compute: str | None = None
    # revoke_assignment: the stray assignment, as the drift check found it
    assignment_name: str | None = None
    principal: str | None = None
    role: str | None = None
    grant_id: int | None = None  # regrant
    min_nodes: int | None = None  # set_min_nodes
    idle_seconds: int | None = None  # set_idle_time


class ReviewPayload(_Payload):
    action: Literal["review"] = "review"
    reviews: int  # the break-glass access request under review
    # What that request gave, for the review's card.
    cluster: str
    duration_seconds: float


RequestPayload = Annotated[
    AccessPayload | DatastorePayload | JobPayload | ComputePayload | DriftPayload | ReviewPayload,
    Field(discriminator="action"),
]
_PAYLOAD: TypeAdapter[RequestPayload] = TypeAdapter(RequestPayload)


def load_payload(request_id: int | None, action: str, stored: Any) -> RequestPayload:
    """A stored payload as its action's model; `action` (the row's column) decides which,
    since rows written by older versions have no `action` key in their JSON."""
    try:
        if not isinstance(stored, dict):
            raise TypeError(f"a JSON object is needed, not {type(stored).__name__}")
        return _PAYLOAD.validate_python({**stored, "action": action})
    except (ValidationError, TypeError) as exc:
        problems = (
            "; ".join(
                f"`{'.'.join(str(part) for part in error['loc'][1:]) or 'action'}`: {error['msg']}"
                for error in exc.errors()
            )
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise UserError(
            f"Request #{request_id} cannot be read: its stored `{action}` request is not "
            f"valid ({problems})."
        ) from None


def rule_of(payload: RequestPayload) -> RuleFacts | None:
    """The rule that decided the request, if one did (only assessed requests have one)."""
    return payload.rule if isinstance(payload, Assessed) else None
