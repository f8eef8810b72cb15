"""The table of actions: which handler carries out a request of each `action`."""

from __future__ import annotations

from collections.abc import Mapping

from approvals.actions.access import AccessGrant
from approvals.actions.base import ActionHandler
from approvals.actions.compute import ComputeChange
from approvals.actions.datastore import DatastoreRegistration
from approvals.actions.drift_fix import DriftFix
from approvals.actions.job import JobSubmission
from approvals.actions.review import BreakGlassReview
from shared.errors import UserError

HANDLERS: Mapping[str, ActionHandler] = {
    "access": AccessGrant(),
    "datastore": DatastoreRegistration(),
    "job": JobSubmission(),
    "compute": ComputeChange(),
    "drift": DriftFix(),
    "review": BreakGlassReview(),
}


def handler_for(action: str) -> ActionHandler:
    handler = HANDLERS.get(action)
    if handler is None:
        raise UserError(f"unknown action {action!r}")
    return handler
