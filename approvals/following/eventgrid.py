"""Azure Event Grid deliveries of Azure ML job events, turned into job notifications.

Event Grid delivers at least once, in no guaranteed order, and says nothing about failed or
cancelled operations, so an event is only a faster path into `record_job_status`: it
announces a status unless that status or a later one already was (by the poll, another
delivery, another replica). The poll sweep stays the safety net.

Accepted shapes: the Event Grid schema (a JSON array of events, or one event) and CloudEvents
1.0 (`type` / `source` instead of `eventType` / `topic`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from approvals.config import AppConfig, WorkspaceConfig
from approvals.core import WithWorkspaces
from approvals.following.jobs import record_job_status, status_rank
from approvals.spend import IdleSpend
from approvals.tables import JobRow
from shared.errors import WorkspaceError
from workspaces.types import JobInfo, JobStatus

log = logging.getLogger(__name__)

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"


class EventGridPayloadError(ValueError):
    """The body is not an Event Grid delivery; answered with 400."""


@dataclass(frozen=True)
class RunEvent:
    """An Azure ML run event, reduced to what the bot uses."""

    event_id: str
    topic: str  # the workspace's resource id
    job_name: str  # `data.runId`: the job's name
    status: JobStatus
    event_time: str


def as_events(body: Any) -> list[Mapping[str, Any]]:
    events = body if isinstance(body, list) else [body]
    if not events or not all(isinstance(event, Mapping) for event in events):
        raise EventGridPayloadError("expected an Event Grid event or an array of events")
    return list(events)


def event_type(event: Mapping[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


def validation_code(events: list[Mapping[str, Any]]) -> str | None:
    """The code to echo when Event Grid validates a new subscription, else None."""
    for event in events:
        if event_type(event) == VALIDATION_EVENT:
            data = event.get("data") or {}
            code = data.get("validationCode") if isinstance(data, Mapping) else None
            return str(code) if code else None
    return None


def run_event(event: Mapping[str, Any]) -> RunEvent | None:
    """The run event in `event`, or None for any other kind (or one without a job name)."""
    kind = event_type(event)
    if kind not in {RUN_STATUS_CHANGED, RUN_COMPLETED}:
        return None
    raw = event.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    subject = str(event.get("subject") or "")
    job_name = str(data.get("runId") or subject.rpartition("/runs/")[2] or "")
    if not job_name:
        return None
    # RunCompleted means success (Event Grid has no event for a failed or cancelled run).
    status = (
        JobStatus.COMPLETED if kind == RUN_COMPLETED else JobStatus.parse(data.get("runStatus"))
    )
    return RunEvent(
        event_id=str(event.get("id") or ""),
        topic=str(event.get("topic") or event.get("source") or ""),
        job_name=job_name,
        status=status,
        event_time=str(event.get("eventTime") or event.get("time") or ""),
    )


def workspace_for_topic(config: AppConfig, topic: str) -> WorkspaceConfig | None:
    """The configured workspace whose Azure resource id is the event's topic."""
    wanted = topic.rstrip("/").lower()
    return next(
        (ws for ws in config.workspaces.values() if ws.azure.workspace_scope.lower() == wanted),
        None,
    )


def handle_run_event(
    core: WithWorkspaces, event: RunEvent, now: datetime, *, idle_spend: IdleSpend | None
) -> bool:
    """Announce the event's status for the job it names, if the bot follows that job and the
    status is news. True if a status was announced (or recorded) by this call."""
    ws = workspace_for_topic(core.config, event.topic)
    if ws is None:
        log.info("Event Grid event %s is for a workspace amlbot does not govern", event.event_id)
        return False
    if status_rank(event.status) < 0:
        return False
    with core.store.transaction() as session:
        job = session.scalars(
            select(JobRow).where(JobRow.workspace == ws.name, JobRow.name == event.job_name)
        ).first()
    if job is None:
        return False  # a job nobody asked the bot to follow
    info = JobInfo(
        name=job.name, status=event.status, compute=job.compute, studio_url=job.studio_url
    )
    if event.status.is_terminal:
        info = _with_details(core, ws.name, info)
    return record_job_status(core, job.id, info, now, idle_spend=idle_spend)


def _with_details(core: WithWorkspaces, workspace: str, info: JobInfo) -> JobInfo:
    """Duration, metrics and error come from Azure, not from the event. If Azure is not
    reachable the announcement goes out without them rather than not at all."""
    try:
        live = core.backends(workspace).get_job(info.name)
    except WorkspaceError as exc:
        log.warning("details of job %s unavailable: %s", info.name, exc)
        return info
    # Azure's own view wins when it is at least as far along as the event.
    return live if status_rank(live.status) >= status_rank(info.status) else info


def handle_delivery(
    core: WithWorkspaces, body: Any, now: datetime, *, idle_spend: IdleSpend | None
) -> int:
    """Every run event in one delivery; returns how many announced something."""
    announced = 0
    for event in as_events(body):
        parsed = run_event(event)
        if parsed is not None and handle_run_event(core, parsed, now, idle_spend=idle_spend):
            announced += 1
    return announced
