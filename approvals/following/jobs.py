"""Following jobs: each status change that matters is announced once, in order.

The poll (`follow_jobs`) and the Event Grid webhook both end in `record_job_status`, which
raises the job's announced rank by compare-and-set and queues the messages in the same
transaction. Whoever raises the rank first announces; a repeat, a second replica or a late,
older event finds the rank already there and does nothing.

When a job ends, its outcome (how long it ran, Azure's error, the end of its error log) is
asked for once, just before the announcement; without it the announcement still goes out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from approvals import outbox
from approvals.claims import insert_once
from approvals.core import Basics, WithWorkspaces
from approvals.spend import IdleSpend, job_end_line
from approvals.sweep_tables import JobNoticeRow
from approvals.tables import JobRow, JobWatcherRow
from commands.durations import format_duration
from shared.errors import NotFoundError, WorkspaceError
from workspaces.types import JobInfo, JobOutcome, JobStatus

log = logging.getLogger(__name__)

# Order of a job's life. Azure may skip states (a short job goes Queued -> Completed
# between two polls) but never goes back, so a lower rank is always stale news.
_RANKS: dict[JobStatus, int] = {
    JobStatus.NOT_STARTED: 0,
    JobStatus.QUEUED: 1,
    JobStatus.PREPARING: 2,
    JobStatus.STARTING: 2,
    JobStatus.PROVISIONING: 2,
    JobStatus.RUNNING: 3,
    JobStatus.NOT_RESPONDING: 3,
    JobStatus.PAUSED: 3,
    JobStatus.FINALIZING: 4,
    JobStatus.CANCEL_REQUESTED: 5,
    JobStatus.COMPLETED: 10,
    JobStatus.FAILED: 10,
    JobStatus.CANCELED: 10,
}
# The transitions people are told about; the others only move the rank.
ANNOUNCED = frozenset(
    {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
)
# At most this many jobs missing from a workspace's list are looked up one by one per sweep;
# when more are missing, each sweep takes the next ones in turn (see `_due_lookups`).
MAX_SINGLE_LOOKUPS = 10
# Per workspace, the id of the last job looked up one by one: where the next sweep goes on.
# In memory: losing it on a restart only means starting the round again.
_lookup_cursor: dict[str, int] = {}
_cursor_lock = threading.Lock()


def status_rank(status: JobStatus) -> int:
    """-1 for Unknown: it says nothing, so it never replaces what was announced."""
    return _RANKS.get(status, -1)


def job_message(info: JobInfo, outcome: JobOutcome | None = None) -> str:
    """What the requester and watchers read, for an announced status."""
    if outcome is not None:
        info = with_outcome(info, outcome)
    name = f"`{info.name}`"
    where = f" on `{info.compute}`" if info.compute else ""
    if info.status is JobStatus.RUNNING:
        text = f"Job {name} is running{where}."
    elif info.status is JobStatus.COMPLETED:
        text = f"Job {name} completed{where}{_took(info)}."
        if info.metrics:
            shown = sorted(info.metrics.items())[:6]
            text += "\nMetrics: " + ", ".join(f"{key}={value:g}" for key, value in shown)
    elif info.status is JobStatus.FAILED:
        text = f"Job {name} failed{where}{_took(info)}."
        if info.error:
            text += f"\nError: {info.error[:1500]}"
        if outcome is not None and outcome.error_log_tail:
            text += f"\nLast lines of {outcome.error_log_name or 'its log'}:\n" + _code_block(
                outcome.error_log_tail
            )
    elif info.status is JobStatus.CANCELED:
        text = f"Job {name} was canceled{where}."
    else:
        text = f"Job {name} is now {info.status.value}{where}."
    if info.studio_url:
        text += f"\nStudio: {info.studio_url}"
    return text


def with_outcome(info: JobInfo, outcome: JobOutcome) -> JobInfo:
    """`info` completed by what the workspace told about the job's end."""
    return info.model_copy(
        update={
            "started_at": outcome.started_at or info.started_at,
            "ended_at": outcome.ended_at or info.ended_at,
            "error": outcome.error or info.error,
            "metrics": outcome.metrics or info.metrics,
        }
    )


def _code_block(lines: list[str]) -> str:
    # Three backticks inside would end Slack's code block early.
    quoted = "\n".join(line.replace("`" * 3, "'" * 3) for line in lines)
    return f"```\n{quoted}\n```"


def _took(info: JobInfo) -> str:
    if info.ended_at is None:
        return ""
    parts = []
    if info.started_at is not None:
        parts.append(f"ran {_span(info.ended_at - info.started_at)}")
    if info.created_at is not None:
        parts.append(f"{_span(info.ended_at - info.created_at)} after submission")
    return f" ({', '.join(parts)})" if parts else ""


def _span(value: timedelta) -> str:
    """Seconds matter for a short job (2m40s); beyond an hour, minutes are plenty."""
    # Rounded: Azure's times come from two services with different precisions (ARM's
    # creation time in 100 ns, RunHistory's end in ms), so a span may be 159.9995 s.
    seconds = max(round(value.total_seconds()), 0)
    if seconds >= 3600:
        return format_duration(value)
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest}s"
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"


def record_job_status(
    core: WithWorkspaces,
    job_id: int,
    info: JobInfo,
    now: datetime,
    *,
    idle_spend: IdleSpend | None,
) -> bool:
    """Announce `info.status` for job `job_id` unless it (or a later status) already was.

    True if this call raised the job's rank (and so queued any messages). `idle_spend`
    prices the idle time in an ended job's cost line (approvals.idle knows it; following
    may not import it).
    """
    rank = status_rank(info.status)
    if rank < 0:
        return False
    # Asked before the transaction, which must not wait on Azure.
    outcome = _outcome_if_news(core, job_id, info, rank) if info.status.is_terminal else None
    with core.store.transaction() as session:
        insert_once(
            session,
            JobNoticeRow,
            {"job_id": job_id, "status": "", "rank": -1, "updated_at": now},
        )
        raised = session.execute(
            update(JobNoticeRow)
            .where(JobNoticeRow.job_id == job_id, JobNoticeRow.rank < rank)
            .values(status=info.status.value, rank=rank, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(raised, "rowcount", 0) != 1:
            return False
        job = session.get(JobRow, job_id)
        if job is None:
            return False
        job.status = info.status.value
        job.updated_at = now
        job.studio_url = job.studio_url or info.studio_url
        if info.status.is_terminal:
            job.following = False
            ended_at = outcome.ended_at if outcome is not None else None
            job.ended_at = ended_at or info.ended_at or now
        if info.status in ANNOUNCED:
            text = job_message(info, outcome)
            ws = core.config.workspaces.get(job.workspace)
            if info.status.is_terminal and ws is not None and job.ended_at is not None:
                started = (outcome.started_at if outcome else None) or info.started_at
                session.flush()
                cost = job_end_line(session, ws, job, started, job.ended_at, now, idle_spend)
                text += f"\n{cost}" if cost else ""
            _queue_messages(session, job, text, info.status, now)
    return True


def _outcome_if_news(
    core: WithWorkspaces, job_id: int, info: JobInfo, rank: int
) -> JobOutcome | None:
    """The ended job's outcome, unless its end was already announced: a repeat, a late event
    or the replica that lost the race asks nothing. None if the workspace cannot say."""
    with core.store.transaction() as session:
        notice = session.get(JobNoticeRow, job_id)
        workspace = session.scalar(select(JobRow.workspace).where(JobRow.id == job_id))
    if workspace is None or (notice is not None and notice.rank >= rank):
        return None
    try:
        return core.backends(workspace).job_outcome(info.name)
    except WorkspaceError as exc:
        log.warning("details of job %s unavailable; announced without them: %s", info.name, exc)
    except Exception:
        # Details are extras: a fault in fetching them must not hold the announcement back
        # (it would fail again at every sweep).
        log.warning("details of job %s failed; announced without them", info.name, exc_info=True)
    return None


def _queue_messages(
    session: Session, job: JobRow, text: str, status: JobStatus, now: datetime
) -> None:
    watchers = list(
        session.scalars(
            select(JobWatcherRow.person)
            .where(JobWatcherRow.job_id == job.id)
            .order_by(JobWatcherRow.id)
        )
    )
    if job.request_id is not None:
        # The requester hears in the request's thread; the edge falls back to a DM.
        outbox.notify_person(
            session,
            job.requester,
            text,
            now=now,
            request_id=job.request_id,
            dedupe_key=f"job:{job.id}:{status.value}:{job.requester}",
        )
    # A job the bot did not start is followed for its watchers only: `/aml job unwatch`
    # by the last of them ends its messages.
    for person in dict.fromkeys(watchers):
        if job.request_id is not None and person == job.requester:
            continue
        outbox.enqueue(
            session,
            outbox.PERSON_NOTICE,
            # No request id: a watcher is told by DM, not in someone else's thread. The
            # ordering key asks the worker to keep one watcher's updates of one job in
            # order (see `bot.outbox_worker._ordering_key`).
            {"person": person, "text": text, "ordering_key": f"job:{job.id}:{person}"},
            now=now,
            dedupe_key=f"job:{job.id}:{status.value}:{person}",
        )


def follow_jobs(
    core: WithWorkspaces,
    now: datetime,
    workspaces: Iterable[str] | None = None,
    *,
    idle_spend: IdleSpend | None,
) -> int:
    """One poll of every followed job, one `list_jobs` call per workspace.

    Returns how many status changes were announced (or recorded) by this call.
    """
    with core.store.transaction() as session:
        statement = select(JobRow).where(JobRow.following.is_(True)).order_by(JobRow.id)
        if workspaces is not None:
            statement = statement.where(JobRow.workspace.in_(list(workspaces)))
        followed = list(session.scalars(statement))
    by_workspace: dict[str, list[JobRow]] = {}
    for job in followed:
        if job.workspace in core.config.workspaces:
            by_workspace.setdefault(job.workspace, []).append(job)
    changed = 0
    for workspace, jobs in by_workspace.items():
        changed += _follow_workspace(core, workspace, jobs, now, idle_spend)
    return changed


def _follow_workspace(
    core: WithWorkspaces,
    workspace: str,
    jobs: list[JobRow],
    now: datetime,
    idle_spend: IdleSpend | None,
) -> int:
    """One list of the bot's own jobs (all its pages); jobs not in it (someone else's watched
    job, or one the list does not show yet) are looked up one by one, a bounded number per
    sweep in turn. Only a status that outranks what was recorded touches the database."""
    backend = core.backends(workspace)
    live: dict[str, JobInfo] = {}
    if any(job.request_id is not None for job in jobs):
        try:
            live = {info.name: info for info in backend.list_jobs(tag_filter={"amlbot": "true"})}
        except WorkspaceError as exc:
            log.warning("listing jobs in %s failed; the next sweep tries again: %s", workspace, exc)
            return 0
    recorded = _recorded_ranks(core, [job.id for job in jobs])
    changed = 0
    missing: list[JobRow] = []
    for job in jobs:
        info = live.get(job.name)
        if info is None:
            missing.append(job)
        elif _is_news(info, recorded.get(job.id)) and record_job_status(
            core, job.id, info, now, idle_spend=idle_spend
        ):
            changed += 1
    for job in _due_lookups(workspace, missing):
        info = _lookup(core, job, now)
        if (
            info is not None
            and _is_news(info, recorded.get(job.id))
            and record_job_status(core, job.id, info, now, idle_spend=idle_spend)
        ):
            changed += 1
    return changed


def _recorded_ranks(core: Basics, job_ids: list[int]) -> dict[int, int]:
    """The rank each job's last recorded status has (one read for the whole workspace)."""
    with core.store.transaction() as session:
        rows = session.execute(
            select(JobNoticeRow.job_id, JobNoticeRow.rank).where(JobNoticeRow.job_id.in_(job_ids))
        )
        return {job_id: rank for job_id, rank in rows}


def _is_news(info: JobInfo, recorded_rank: int | None) -> bool:
    rank = status_rank(info.status)
    return rank >= 0 and (recorded_rank is None or rank > recorded_rank)


def _due_lookups(workspace: str, missing: list[JobRow]) -> list[JobRow]:
    """The missing jobs to look up this sweep: all of them if few, else the next
    MAX_SINGLE_LOOKUPS after the last one looked up (by id, wrapping round), so that every
    job is looked up within a few sweeps and none waits for ever behind the others."""
    if len(missing) <= MAX_SINGLE_LOOKUPS:
        return missing
    ordered = sorted(missing, key=lambda job: job.id)
    with _cursor_lock:
        after = _lookup_cursor.get(workspace, 0)
        start = next((i for i, job in enumerate(ordered) if job.id > after), 0)
        due = (ordered[start:] + ordered[:start])[:MAX_SINGLE_LOOKUPS]
        _lookup_cursor[workspace] = due[-1].id
    return due


def _lookup(core: WithWorkspaces, job: JobRow, now: datetime) -> JobInfo | None:
    try:
        return core.backends(job.workspace).get_job(job.name)
    except NotFoundError:
        log.warning("job %s is gone from %s; no longer following it", job.name, job.workspace)
        with core.store.transaction() as session:
            session.execute(
                update(JobRow).where(JobRow.id == job.id).values(following=False, updated_at=now)
            )
    except WorkspaceError as exc:
        log.warning("looking up job %s failed; retried next sweep: %s", job.name, exc)
    return None
