"""What each action's request carries, typed: one pydantic model per action, told apart
by `action` (a discriminated union). The payload is stored as JSON on the request row;
`read_payload` reads it back as its model, so a handler never indexes a dict.

Still plain dicts (issue 10): the writers (`approvals.service`, `approvals.idle.actions`,
`approvals.break_glass`, `approvals.drift.fix_request`) build the JSON these models read,
and the readers outside the handlers (wording, spend, cards, console, Slack renderers)
index `row.payload`. Unknown keys (the risk facts kept for the card: estimate, rule,
budget line, capacity) are ignored here.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from approvals.tables import RequestRow
from approvals.wording import short_ref
from shared.errors import UserError
from shared.values import DatastoreKind


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AccessPayload(_Payload):
    action: Literal["access"]
    cluster: str
    duration_seconds: float
    # Ends when the work on the cluster is done (at the latest after the duration).
    until_done: bool = False
    # The active grant this request pushes out, instead of making a second assignment.
    extends_grant: int | None = None


class DatastorePayload(_Payload):
    action: Literal["datastore"]
    name: str
    store_kind: DatastoreKind
    account: str
    container: str
    description: str | None = None


class JobPayload(_Payload):
    action: Literal["job"]
    compute: str
    environment: str
    command: str
    code: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    instances: int = 1
    max_duration_seconds: float | None = None
    experiment: str | None = None
    name: str | None = None  # the display name the person chose


class ComputePayload(_Payload):
    action: Literal["compute"]
    operation: Literal["stop_instance", "set_min_nodes", "set_idle_time", "set_idle_shutdown"]
    compute: str
    min_nodes: int | None = None
    idle_seconds: int | None = None
    idle_shutdown_minutes: int | None = None


class DriftPayload(_Payload):
    action: Literal["drift"]
    operation: Literal["revoke_assignment", "regrant", "set_min_nodes", "set_idle_time"]
    finding_id: int
    compute: str | None = None
    # revoke_assignment: the stray assignment, as the drift check found it
    assignment_name: str | None = None
    principal: str | None = None
    role: str | None = None
    grant_id: int | None = None  # regrant
    min_nodes: int | None = None  # set_min_nodes
    idle_seconds: int | None = None  # set_idle_time


class ReviewPayload(_Payload):
    action: Literal["review"]
    reviews: int  # the break-glass access request under review


RequestPayload = Annotated[
    AccessPayload | DatastorePayload | JobPayload | ComputePayload | DriftPayload | ReviewPayload,
    Field(discriminator="action"),
]
_PAYLOAD: TypeAdapter[RequestPayload] = TypeAdapter(RequestPayload)

P = TypeVar("P", bound=_Payload)
T = TypeVar("T")


def read_payload(row: RequestRow) -> RequestPayload:
    """The request's payload as its action's model. A payload that does not fit (written
    by an older version, or edited by hand) fails the request with the field named."""
    try:
        return _PAYLOAD.validate_python({**row.payload, "action": row.action})
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(str(part) for part in error['loc'][1:])}`: {error['msg']}"
            for error in exc.errors()
        )
        raise UserError(
            f"Request {short_ref(row.id)} cannot be carried out: its stored `{row.action}` "
            f"request is not valid ({problems})."
        ) from None


def payload_as(row: RequestRow, model: type[P]) -> P:
    """`read_payload`, for a handler that knows which action it carries out."""
    payload = read_payload(row)
    if not isinstance(payload, model):
        raise UserError(f"Request {short_ref(row.id)} is not a `{model.__name__}` request.")
    return payload


def required(row: RequestRow, value: T | None, field: str) -> T:
    """A field the payload's operation needs (the model leaves it optional, since other
    operations of the same action do without it)."""
    if value is None:
        raise UserError(
            f"Request {short_ref(row.id)} cannot be carried out: its stored `{row.action}` "
            f"request has no `{field}`."
        )
    return value
