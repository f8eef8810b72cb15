"""One round of every sweep, as plain functions of (core, sweeps, now): `core` the
configuration, store, clock and workspaces, `sweeps` the workflow's own sweeps
(`approvals/core.py`). The scheduler calls `run_due` every few seconds on every replica;
each unit of work inside is claimed in the database, so replicas share the work instead of
doubling it.

- grants and requests (cheap queries): every round, on every replica; this includes
  resuming requests whose side effect was in flight when their process died (lease ran out);
- job following and idle compute (they call Azure): per workspace, when its lease is due
  (`policy.job_poll_interval`, `policy.idle.sweep_interval`), by one replica. The workspaces'
  calls run side by side on a bounded pool, at most `PER_SUBSCRIPTION` at once in one
  subscription (ARM's read budget is per subscription and identity), so 50 workspaces take
  about as long as the slowest few, and a workspace Azure throttles (429, Retry-After) holds
  only its own slot while it waits.
- the weekly cost digest of a workspace with a budget, once a week, by one replica.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from approvals.claims import claim_due
from approvals.core import Basics, Sweeps, WithWorkspaces
from approvals.correlation import correlated
from approvals.cost_digest import WEEK, send_cost_digest
from approvals.drift import check_workspace
from approvals.escalation import escalate_pending_requests
from approvals.following.jobs import follow_jobs
from approvals.idle.digest import sweep_idle
from approvals.idle.spend import idle_spend_between
from approvals.reminders import (
    expire_requests,
    remind_pending_requests,
    resume_stalled_requests,
    revoke_expired_grants,
    warn_expiring_grants,
)

log = logging.getLogger(__name__)

HOLDER = f"{socket.gethostname()}-{os.getpid()}"
# Workspace sweeps in flight at once: per subscription, and in all.
PER_SUBSCRIPTION = 8
MAX_SWEEP_THREADS = 32
# The drift check runs once a night, from `policy.drift.at` on, under a claim named for the
# day; this only has to outlast that day.
DRIFT_EVERY = timedelta(days=2)


@dataclass
class SweepReport:
    """What one round did; `changed` says whether the outbox may have new rows."""

    revoked: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    warned: list[int] = field(default_factory=list)
    reminded: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    job_changes: int = 0
    nudged: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    work_ended: list[int] = field(default_factory=list)
    drift_reports: list[int] = field(default_factory=list)
    work_warned: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    cost_digests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Workspace steps run on several threads; they add to the report under this lock.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return bool(
            self.revoked
            or self.expired
            or self.warned
            or self.reminded
            or self.resumed
            or self.job_changes
            or self.nudged
            or self.escalated
            or self.work_ended
            or self.drift_reports
            or self.work_warned
            or self.digests
            or self.cost_digests
        )


def run_startup(sweeps: Sweeps) -> SweepReport:
    """Before anything else on start: take away access that ran out while the bot was down,
    expire requests nobody decided in time, and finish what a dead process left in flight."""
    report = SweepReport()
    _overdue(sweeps, report)
    if report.revoked or report.expired or report.resumed:
        log.info(
            "at start-up: revoked grants %s, expired requests %s, resumed requests %s",
            report.revoked,
            report.expired,
            report.resumed,
        )
    return report


def run_due(
    core: WithWorkspaces, sweeps: Sweeps, now: datetime, holder: str = HOLDER
) -> SweepReport:
    """One round: everything that is due at `now`."""
    report = SweepReport()
    _overdue(sweeps, report)
    _step(report, "warn", lambda: report.warned.extend(warn_expiring_grants(core, now)))
    _step(report, "remind", lambda: report.reminded.extend(remind_pending_requests(core, now)))

    def escalate() -> None:
        done = escalate_pending_requests(core.store, core.config, now)
        report.nudged.extend(done.nudged)
        report.escalated.extend(done.escalated)

    _step(report, "escalate", escalate)
    steps: list[WorkspaceStep] = []
    for ws in core.config.workspaces.values():
        subscription = ws.azure.subscription_id
        if _claim(core, f"jobs:{ws.name}", now, ws.policy.job_poll_interval, holder):

            def follow(name: str = ws.name) -> None:
                # Job following may not import idle detection; it is handed the pricing.
                changes = follow_jobs(core, now, [name], idle_spend=idle_spend_between)
                with report.lock:
                    report.job_changes += changes

            def work(name: str = ws.name) -> None:
                done = sweeps.end_grants_whose_work_ended(name)
                with report.lock:
                    report.work_ended.extend(done.ended)
                    report.work_warned.extend(done.warned)

            def follow_then_end_work(name: str = ws.name) -> None:
                # Grants tied to a job end on the job states just read.
                _step(report, f"jobs:{name}", lambda: follow(name))
                _step(report, f"work:{name}", lambda: work(name))

            steps.append(WorkspaceStep(f"jobs:{ws.name}", subscription, follow_then_end_work))
        drift = ws.policy.drift
        if (
            drift.enabled
            and now.time() >= drift.at
            # One claim per calendar day (UTC): it runs once a day, from `at` on.
            and _claim(core, f"drift:{ws.name}:{now.date().isoformat()}", now, DRIFT_EVERY, holder)
        ):

            def check(name: str = ws.name) -> None:
                workspace = core.config.workspaces[name]
                found = check_workspace(core.store, workspace, core.backends(name), now)
                if found is not None:
                    report.drift_reports.append(found)

            _step(report, f"drift:{ws.name}", check)
        if _claim(core, f"idle:{ws.name}", now, ws.policy.idle.sweep_interval, holder):

            def idle(name: str = ws.name) -> None:
                digest = sweep_idle(core, name, now)
                if digest is not None:
                    with report.lock:
                        report.digests.append(digest)

            steps.append(WorkspaceStep(f"idle:{ws.name}", subscription, idle))
        if ws.budget is not None and _claim(core, f"costs:{ws.name}", now, WEEK, holder):

            def costs(name: str = ws.name) -> None:
                if send_cost_digest(core, name, now):
                    with report.lock:
                        report.cost_digests.append(name)

            steps.append(WorkspaceStep(f"costs:{ws.name}", subscription, costs))
    run_workspace_steps(report, steps)
    return report


@dataclass(frozen=True)
class WorkspaceStep:
    name: str  # "jobs:demo", "idle:demo"
    subscription: str
    work: Callable[[], None]


def run_workspace_steps(
    report: SweepReport,
    steps: list[WorkspaceStep],
    *,
    per_subscription: int = PER_SUBSCRIPTION,
    max_threads: int = MAX_SWEEP_THREADS,
) -> None:
    """Run the steps side by side, at most `per_subscription` of one subscription at once;
    return when all have ended. One step alone runs on this thread."""
    if len(steps) <= 1:
        for step in steps:
            _step(report, step.name, step.work)
        return
    slots = {
        subscription: threading.BoundedSemaphore(per_subscription)
        for subscription in {step.subscription for step in steps}
    }

    def run(step: WorkspaceStep) -> None:
        with slots[step.subscription]:
            _step(report, step.name, step.work)

    with ThreadPoolExecutor(
        max_workers=min(max_threads, len(steps)), thread_name_prefix="amlbot-sweep"
    ) as pool:
        list(pool.map(run, steps))


def _overdue(sweeps: Sweeps, report: SweepReport) -> None:
    _step(report, "revoke", lambda: report.revoked.extend(revoke_expired_grants(sweeps)))
    _step(report, "expire", lambda: report.expired.extend(expire_requests(sweeps)))
    _step(report, "resume", lambda: report.resumed.extend(resume_stalled_requests(sweeps)))


def _claim(core: Basics, name: str, now: datetime, interval: timedelta, holder: str) -> bool:
    with core.store.transaction() as session:
        return claim_due(session, name, now, interval, holder)


def _step(report: SweepReport, name: str, work: Callable[[], None]) -> None:
    """Run one part of a round; a failure is logged and the other parts still run. What
    it logs, audits and queues carries a correlation id of its own, `sweep:NAME:RANDOM`."""
    try:
        with correlated(f"sweep:{name}:{uuid.uuid4().hex[:8]}"):
            work()
    except Exception:
        log.exception("sweep step %s failed; it runs again next round", name)
        with report.lock:
            report.failed.append(name)
