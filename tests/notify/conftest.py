"""What the notification tests share: the demo core on a manual clock, its outbox, a
workspace backend that counts its calls, and the bot's Slack edge against the fake Slack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from starlette.applications import Starlette

from approvals import outbox
from approvals.config import AppConfig
from approvals.tables import InboxRow, OutboxRow
from bot.eventgrid_webhook import eventgrid_routes
from bot.outbox_worker import OutboxWorker
from bot.scheduler import NotificationScheduler
from bot.services import inbox_handlers
from bot.settings import Settings
from bot.slack.app import SlackBot, build_slack
from bot.slack.http import asgi_app
from bot.slack.listeners.notices import register_slack_actions
from bot.wiring import Core, build_core
from bot.work import InboxWorker
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_signing import (
    block_actions_payload,
    interactive_body,
    post_signed,
)
from tests.slack.conftest import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CAROL,
    CHANNEL,
    SIGNING_SECRET,
    USERS,
    AppServer,
    wait_for,
)
from workspaces.clock import ManualClock
from workspaces.port import WorkspaceBackend
from workspaces.types import JobInfo, JobOutcome

__all__ = ["ALICE", "BOB", "CAROL", "CHANNEL", "wait_for"]

ENV = "azureml:AzureML-sklearn-1.5@latest"
EVENTGRID_SECRET = "eg-secret-7f3a"


def submit_job(core: Core, person: str = "alice", command: str = "python train.py") -> str:
    """Submit a job on the shared cpu-cluster (runs at once); returns its name."""
    reply = core.service.handle_text(
        person,
        f'job submit --compute cpu-cluster --environment {ENV} --command "{command}"',
    )
    assert reply.ok, reply.text
    return reply.text.split("`")[1]


def notices(core: Core, kind: str = outbox.PERSON_NOTICE) -> list[dict[str, Any]]:
    with core.store.transaction() as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.kind == kind).order_by(OutboxRow.id)
        )
        return [row.payload for row in rows]


def job_notices(core: Core, job: str) -> list[tuple[str, str]]:
    """(person, first line) of every queued message about job `job`, oldest first."""
    return [
        (str(p["person"]), str(p["text"]).splitlines()[0])
        for p in notices(core)
        if f"`{job}`" in str(p["text"]) and "submitted" not in str(p["text"])
    ]


class CountingBackend:
    """The real backend, counting the calls that reach the workspace."""

    def __init__(self, inner: WorkspaceBackend) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def list_jobs(self, *, tag_filter: dict[str, str] | None = None) -> list[JobInfo]:
        self.calls.append("list_jobs")
        return self.inner.list_jobs(tag_filter=tag_filter)

    def get_job(self, name: str) -> JobInfo:
        self.calls.append("get_job")
        return self.inner.get_job(name)

    def job_outcome(self, name: str) -> JobOutcome:
        self.calls.append("job_outcome")
        return self.inner.job_outcome(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def demo_config(demo_config: AppConfig) -> AppConfig:
    """The demo in `westeurope`, a region the shipped price snapshot does not cover: these
    tests are about where a cost comes from, so each price here comes from the (fake)
    Retail Prices API, or is unknown."""
    demo = demo_config.workspaces["demo"].model_copy(update={"region": "westeurope"})
    return demo_config.model_copy(update={"workspaces": {**demo_config.workspaces, "demo": demo}})


@pytest.fixture
def core(core: Core) -> Core:
    """The shared core (SQLite and PostgreSQL), its simulated workspace created now, as
    `amlbot serve` would at start: the compute instance's last activity is the start."""
    core.backends("demo")
    return core


def replica_of(core: Core) -> Core:
    """Another bot process on the same database (its simulated workspace already there)."""
    url = core.store.engine.url.render_as_string(hide_password=False)
    replica = build_core(core.config, database_url=url, clock=core.clock)
    replica.backends("demo")
    return replica


@pytest.fixture
def counting(core: Core) -> CountingBackend:
    backend = CountingBackend(core.backends("demo"))
    core.backends.install("demo", backend)
    return backend


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
        yield slack


@dataclass
class NotifyBot:
    """The Slack edge with this package's registrar and routes, on uvicorn. Messages are
    delivered when a test calls `deliver()` (the real worker, on the manual clock)."""

    core: Core
    clock: ManualClock
    slack: FakeSlack
    bot: SlackBot
    worker: OutboxWorker
    url: str
    inbox_worker: InboxWorker

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every kept inbound item (clicks, Event Grid deliveries) is handled."""

        def handled() -> bool:
            with self.core.store.transaction() as session:
                waiting = session.scalars(
                    select(InboxRow.id).where(InboxRow.status.in_(["pending", "running"]))
                ).all()
            return not waiting

        self.inbox_worker.wake()
        wait_for(handled, timeout=timeout, what="the inbox to be handled")

    def deliver(self) -> int:
        return self.worker.run_once()

    def deliver_until_quiet(
        self, step: timedelta = timedelta(seconds=30), rounds: int = 40
    ) -> None:
        """Deliver, moving the clock on, until nothing is pending (retries included)."""
        for _ in range(rounds):
            self.deliver()
            with self.core.store.transaction() as session:
                left = session.scalars(select(OutboxRow).where(OutboxRow.status == "pending")).all()
            if not left:
                return
            self.clock.advance(step)
        raise AssertionError("messages still pending after every retry")

    def click(self, user: str, action_id: str, value: str, message: Message) -> int:
        payload = block_actions_payload(
            action_id=action_id,
            user_id=user,
            value=value,
            block_id="b",
            channel_id=message.channel,
            message_ts=message.ts,
            message={"type": "message", "text": message.text, "blocks": message.blocks},
            response_url=self.slack.response_url(message.channel, user, message_ts=message.ts),
        )
        body = interactive_body(payload)
        return post_signed(self.url, "/slack/events", body, secret=SIGNING_SECRET).status

    def answer_to(self, user: str, containing: str) -> str:
        def find() -> str | None:
            for post in reversed(self.slack.response_posts()):
                if post.user == user and containing in post.text:
                    return post.text
            return None

        return wait_for(find, what=f"an answer to {user} containing {containing!r}")


@pytest.fixture
def notify_bot(core: Core, clock: ManualClock, fake_slack: FakeSlack) -> Iterator[NotifyBot]:
    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=fake_slack.base_url,
    )
    bot = build_slack(core, settings, extra_registrars=[register_slack_actions])
    worker = OutboxWorker(core.store, bot.deliverer, core.clock, core.config)
    # Mounted the way the HTTP app is asked to: its routes plus the Event Grid route.
    app = Starlette(
        routes=[*asgi_app(bot).routes, *eventgrid_routes(core, secret=EVENTGRID_SECRET)]
    )
    # The inbox is handled as in a worker; the outbox only when a test delivers it.
    inbox_worker = InboxWorker(core.store, core.clock, inbox_handlers(bot), poll=0.05)
    bot.edge.on_accepted = inbox_worker.wake
    inbox_worker.start()
    try:
        with AppServer(app) as server:
            yield NotifyBot(core, clock, fake_slack, bot, worker, server.url, inbox_worker)
    finally:
        inbox_worker.stop(grace=5)
        bot.edge.close()


def start_notifications(
    core: Core, *, tick: timedelta, on_change: Callable[[], None] | None = None
) -> NotificationScheduler:
    """The scheduler `amlbot serve` builds, started: revokes and expires what is overdue,
    then sweeps every `tick`. `stop()` ends it."""
    scheduler = NotificationScheduler(core, tick=tick, on_change=on_change)
    scheduler.start()
    return scheduler
