"""What a worker runs beside (or without) an edge: the inbox worker, the outbox, the sweeps
and housekeeping; and what an edge runs beside itself (`serve`'s `amlbot work` children).
`bot/serve.py` starts them; each is a `BackgroundService` (start, stop)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from approvals import inbox
from approvals.outbox import queued_signal
from approvals.prices import CHORE_EVERY, refresh_if_due
from approvals.scheduled import HOLDER
from approvals.store import CHECKPOINT_EVERY, checkpoint_log
from bot.eventgrid_webhook import EVENTGRID_HANDLER, job_events_handler
from bot.outbox_worker import OutboxWorker
from bot.processes import (
    SHUTDOWN_GRACE_SECONDS,
    BackgroundService,
    WorkerChildren,
    work_processes,
)
from bot.scheduler import Housekeeping, NotificationScheduler
from bot.settings import Settings
from bot.slack.app import Registrar, SlackBot
from bot.slack.listeners.drift import register_slack_drift
from bot.slack.listeners.notices import register_slack_actions
from bot.wiring import Core
from bot.work import Handler, InboxWorker
from workspaces.azure.retail_prices import retail_fetch

log = logging.getLogger(__name__)

OUTBOX_POLL = timedelta(seconds=1)
OUTBOX_MIN_GAP = timedelta(milliseconds=20)
EMAIL_RETRY = timedelta(minutes=10)
PRUNE_EVERY = timedelta(hours=1)


class OutboxLoop:
    """Delivers the outbox: at once when woken (a change queued a message), else every
    `interval` (retries, and what other processes queued). Not within `min_gap` of the last
    round: a burst of wakes is one round, not a busy loop."""

    name = "outbox"

    def __init__(
        self,
        work: Callable[[], object],
        interval: timedelta = OUTBOX_POLL,
        min_gap: timedelta = OUTBOX_MIN_GAP,
        queued: threading.Event | None = None,
    ) -> None:
        self.interval = interval.total_seconds()
        self.queued = queued
        self.min_gap = min_gap.total_seconds()
        self.work = work
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="amlbot-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def wake_if_queued(self) -> None:
        """Wake only if this process queued a message since the last round (`queued`)."""
        if self.queued is None or self.queued.is_set():
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if self.queued is not None:
                self.queued.clear()  # before the round: what is queued during it wakes us
            try:
                self.work()
            except Exception:
                log.exception("delivering the outbox failed; it runs again")
            if self.min_gap and self._stopping.wait(self.min_gap):
                return
            self._wake.wait(self.interval)


class StoppingWorker:
    """The inbox worker as a background service, stopped with the shutdown grace."""

    name = "inbox"

    def __init__(self, worker: InboxWorker, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        self.worker = worker
        self.grace = grace

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(self.grace)


def slack_registrars() -> list[Registrar]:
    """Listeners beyond the built-in ones (`Callable[[AsyncApp, SlackEdge], None]`), e.g.
    the notifications' buttons. Workers build them too: a job is found by its name."""
    return [register_slack_actions, register_slack_drift]


def inbox_handlers(bot: SlackBot) -> dict[str, Handler]:
    """Every kind of inbox item, by handler name: the Slack jobs and Event Grid deliveries."""
    handlers: dict[str, Handler] = {name: bot.edge.run_item for name in bot.edge.jobs}
    handlers[EVENTGRID_HANDLER] = job_events_handler(bot.edge.core, bot.edge.on_core_done)
    return handlers


def background_services(
    core: Core,
    bot: SlackBot,
    *,
    worker: bool = True,
    grace: float = SHUTDOWN_GRACE_SECONDS,
    prices_url: str | None = None,
) -> list[BackgroundService]:
    """What a worker runs beside the edge: the inbox worker, the outbox, the sweeps and
    housekeeping (with `prices_url`, the daily price refresh from that Retail Prices API).
    Without `worker`, nothing: the edge only accepts."""
    if not worker:
        return []
    outbox = OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
    outbox_loop = OutboxLoop(outbox.run_once, queued=queued_signal(core.store.engine))
    # A card or notice should not wait for the next poll after a command changed state.
    bot.edge.on_core_done = outbox_loop.wake_if_queued
    inbox_worker = InboxWorker(
        core.store,
        core.clock,
        inbox_handlers(bot),
        threads=bot.edge.options.work_threads,
        on_dead=bot.edge.dead_letter,
        on_handled=outbox_loop.wake_if_queued,
        metrics=core.metrics,
    )
    bot.edge.on_accepted = inbox_worker.wake
    bot.edge.worker = inbox_worker
    identity = bot.edge.identity

    def resolve_emails() -> None:
        left = identity.resolve_emails()
        if left:
            log.warning("not yet known in Slack, retried later: %s", ", ".join(left))

    def prune_inbox() -> None:
        inbox.prune(core.store, core.clock.now())

    chores = [
        Housekeeping("resolve-emails", EMAIL_RETRY, resolve_emails),
        Housekeeping("prune-inbox", PRUNE_EVERY, prune_inbox),
    ]
    if core.store.engine.dialect.name == "sqlite":
        chores.append(
            Housekeeping(
                "checkpoint-log",
                timedelta(seconds=CHECKPOINT_EVERY),
                lambda: checkpoint_log(core.store.engine),
            )
        )
    if prices_url is not None:
        fetch = retail_fetch(prices_url)
        chores.append(
            Housekeeping("prices", CHORE_EVERY, lambda: refresh_if_due(core, fetch, HOLDER))
        )

    return [
        outbox_loop,
        StoppingWorker(inbox_worker, grace),
        # Sweeps: job updates, grant expiry, reminders, idle compute, recovery. What they
        # queue is delivered at once by waking the outbox loop.
        NotificationScheduler(
            core,
            on_change=outbox_loop.wake,
            housekeeping=chores,
        ),
    ]


def edge_services(
    core: Core,
    bot: SlackBot,
    settings: Settings,
    config_path: str | None,
    *,
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
) -> list[BackgroundService]:
    """What runs beside an edge: its `amlbot work` children, none when the deployment runs
    its workers itself (`AMLBOT_WORK_PROCESSES=0`). With `health_port`, child i answers
    probes and metrics on `health_port + i`."""
    children = work_processes(settings, settings.database_url)
    if not children:
        return []
    return [
        WorkerChildren(
            children,
            config_path,
            health_port=health_port,
            health_host=health_host,
            priority=settings.work_priority,
        )
    ]
