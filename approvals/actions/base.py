"""The shape of an action's handler: what `approvals.execution` asks of each."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from approvals.config import WorkspaceConfig
from approvals.tables import RequestRow
from approvals.wording import short_ref
from approvals.workflow_base import WorkflowBase
from shared.errors import UserError

# What Azure resources made for a request are named from; fixed, so a retry finds its own.
NAMES = uuid.UUID("5b0f3c1e-8d0a-4f7e-9b7c-616d6c626f74")

# Rows the carry-out adds in the transaction that records its success (a grant, a job).
FollowUp = Callable[[Session, datetime], None]


@dataclass(frozen=True)
class Carried:
    """What carrying a request out did: `result` is stored on the request and audited."""

    result: dict[str, Any]
    follow_up: FollowUp | None = None


class ActionHandler(ABC):
    """Carries out one action in the workspace. A handler keeps no state: what it needs
    comes from the workflow (`flow`: config, directory, store, workspace, clock) and the
    request row. A carry-out may run again after an interruption, so it must be safe to
    repeat: names derive from the request, and what was done is recognised."""

    def plan(self, row: RequestRow, now: datetime) -> dict[str, Any] | None:
        """What the first carry-out decides and every retry repeats, stored as the
        request's result when it enters `executing`. Most actions decide nothing."""
        return row.result

    @abstractmethod
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        """Do it in the workspace (outside any transaction); raise an `AmlbotError` to
        fail the request with its text, or a retryable one to try again later."""

    def done_text(self, row: RequestRow) -> str:
        """What the requester reads once the request succeeded."""
        return f"Request {short_ref(row.id)} done: {row.summary}."


P = TypeVar("P", bound=BaseModel)
T = TypeVar("T")


def payload_as(row: RequestRow, model: type[P]) -> P:
    """The request's payload, for a handler that knows which action's model it carries out
    (`approvals.payloads`); a request of another action is refused."""
    payload = row.payload
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
