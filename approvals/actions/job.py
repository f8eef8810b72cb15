"""`job`: a command job submitted to the workspace under the bot's identity, then followed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from approvals.actions.base import NAMES, ActionHandler, Carried, payload_as
from approvals.config import WorkspaceConfig
from approvals.payloads import JobPayload
from approvals.tables import JobRow, RequestRow
from approvals.workflow_base import WorkflowBase
from workspaces.types import JobSpec


def job_name(workspace: str, request_id: int) -> str:
    """The job's name, derived from the request so a retry cannot submit a second."""
    suffix = uuid.uuid5(NAMES, f"job:{workspace}:{request_id}").hex[:8]
    return f"amlbot-{request_id}-{suffix}"


class JobSubmission(ActionHandler):
    def carry_out(self, flow: WorkflowBase, ws: WorkspaceConfig, row: RequestRow) -> Carried:
        payload = payload_as(row, JobPayload)
        job = flow.backend_for(ws.name).submit_job(
            JobSpec(
                name=job_name(ws.name, row.id),
                compute=payload.compute,
                environment=payload.environment,
                command=payload.command,
                code=payload.code,
                inputs=payload.inputs,
                instance_count=payload.instances,
                timeout_seconds=(
                    int(payload.max_duration_seconds) if payload.max_duration_seconds else None
                ),
                experiment=payload.experiment or "amlbot",
                display_name=payload.name or None,
                tags={
                    "amlbot": "true",
                    "amlbot-request": str(row.id),
                    "amlbot-requester": row.requester,
                },
            )
        )

        def track(session: Session, now: datetime) -> None:
            session.add(
                JobRow(
                    workspace=ws.name,
                    name=job.name,
                    request_id=row.id,
                    requester=row.requester,
                    compute=job.compute or payload.compute,
                    status=job.status.value,
                    studio_url=job.studio_url,
                    submitted_at=now,
                    updated_at=now,
                    following=True,
                )
            )

        return Carried(
            {"job": job.name, "status": job.status.value, "studio_url": job.studio_url}, track
        )

    def done_text(self, row: RequestRow) -> str:
        result = row.result or {}
        link = f"\nStudio: {result['studio_url']}" if result.get("studio_url") else ""
        return (
            f"Job `{result.get('job')}` submitted on `{payload_as(row, JobPayload).compute}` "
            f"(status {result.get('status')}). Follow it with "
            f"`/aml job status {result.get('job')}`.{link}"
        )
