"""Runs the sweeps in the background: APScheduler 3.x triggers `run_due` at a short interval.

Why one short periodic job and no job per grant or request: APScheduler 3's job stores cannot
be shared by several processes, and a job that fires later than its `misfire_grace_time` is
skipped. So APScheduler only says "look now" (memory job store, nothing persisted); what is
due, and who claimed it, is in the database. A round that fires late still runs
(`misfire_grace_time=None`), missed rounds collapse into one (`coalesce`), and a slow round
never overlaps the next (`max_instances=1`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from approvals.scheduled import HOLDER, SweepReport, run_due, run_startup
from bot.wiring import Core
from shared.wording import counted

log = logging.getLogger(__name__)

DEFAULT_TICK = timedelta(seconds=15)
JOB_ID = "amlbot-sweeps"


class _NotEverySkip(logging.Filter):
    """APScheduler warns "skipped: maximum number of running instances reached" at every
    tick a round is still running: every 15 s for as long as Azure hangs. `_skipped` says it
    once per overrun and counts every skip in a metric instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)


# APScheduler's log of our schedulers, less that one line (a child of its own logger, so its
# level and handlers still apply; other schedulers in the process are left alone).
_SCHEDULER_LOG = logging.getLogger("apscheduler.scheduler.amlbot")
_SCHEDULER_LOG.addFilter(_NotEverySkip())


@dataclass(frozen=True)
class Housekeeping:
    """A periodic chore beside the sweeps (e-mail lookups, pruning the inbox)."""

    name: str
    every: timedelta
    work: Callable[[], object]


def _logged(chore: Housekeeping) -> Callable[[], None]:
    def run() -> None:
        try:
            chore.work()
        except Exception:
            log.exception("%s failed; it runs again in %s", chore.name, chore.every)

    return run


class NotificationScheduler:
    """A background service (`name`, `start()`, `stop()`) as `bot/serve.py` runs them."""

    name = "notifications"

    def __init__(
        self,
        core: Core,
        *,
        tick: timedelta = DEFAULT_TICK,
        on_change: Callable[[], None] | None = None,
        holder: str = HOLDER,
        housekeeping: Sequence[Housekeeping] = (),
    ) -> None:
        self.core = core
        self.tick = tick
        # Called when a round queued messages, e.g. to wake the outbox worker at once.
        self.on_change = on_change or (lambda: None)
        self.holder = holder
        self.housekeeping = tuple(housekeeping)
        self.rounds = 0  # rounds finished, failed or not: for health checks and tests
        self._last_round_at: float | None = None  # time.monotonic(), for readiness
        self._scheduler: BackgroundScheduler | None = None
        self._overrunning: dict[str, int] = {}  # job id -> rounds skipped while it runs
        self._overrun_lock = threading.Lock()  # the scheduler's thread and the executor's

    def start(self) -> None:
        # Synchronously, before the first round and before the app answers anyone: access
        # that ran out during downtime is taken away first.
        self._after(run_startup(self.core.service.workflow))
        self._last_round_at = time.monotonic()
        scheduler = BackgroundScheduler(timezone=UTC, logger=_SCHEDULER_LOG)
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        scheduler.add_listener(self._ended, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        scheduler.add_job(
            self._round,
            IntervalTrigger(seconds=self.tick.total_seconds(), timezone=UTC),
            id=JOB_ID,
            name="amlbot sweeps",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        for chore in self.housekeeping:
            scheduler.add_job(
                _logged(chore),
                IntervalTrigger(seconds=chore.every.total_seconds(), timezone=UTC),
                id=f"amlbot-{chore.name}",
                name=chore.name,
                next_run_time=datetime.now(UTC),
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        scheduler.start()
        self._scheduler = scheduler
        log.info("notification sweeps every %ss", self.tick.total_seconds())

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def _round(self) -> None:
        try:
            with self.core.metrics.timed_sweep():
                self._after(
                    run_due(
                        self.core, self.core.service.workflow, self.core.clock.now(), self.holder
                    )
                )
        except Exception:  # APScheduler would only log it too; keep the trace ours
            log.exception("a sweep round failed; the next one runs in %s", self.tick)
        finally:
            self.rounds += 1
            self._last_round_at = time.monotonic()

    def _skipped(self, event: JobEvent) -> None:
        """A tick found the job's last round still running (APScheduler's thread)."""
        with self._overrun_lock:
            skipped = self._overrunning.get(event.job_id, 0)
            self._overrunning[event.job_id] = skipped + 1
        self.core.metrics.scheduled_skips.labels(job=event.job_id).inc()
        if not skipped:
            log.warning(
                "%s: a round is still running at the next tick; rounds are skipped until it "
                "ends (amlbot_scheduled_rounds_skipped_total counts them)",
                event.job_id,
            )

    def _ended(self, event: JobEvent) -> None:
        with self._overrun_lock:
            skipped = self._overrunning.pop(event.job_id, 0)
        if skipped:
            log.warning(
                "%s: the long round ended; %s skipped meanwhile",
                event.job_id,
                counted(skipped, "round"),
            )

    def seconds_since_round(self) -> float | None:
        """Since the last round (or the start-up sweep) finished; None before start."""
        if self._last_round_at is None:
            return None
        return time.monotonic() - self._last_round_at

    def _after(self, report: SweepReport) -> None:
        if report.changed:
            self.on_change()
