"""What every listener shares: the core, who is who, dedupe, and the threads work runs on.

Listeners run on the event loop and do nothing there but ack and hand the delivery to a
thread (`SlackEdge.hand_over`); everything else (database, Azure, Slack Web API calls)
runs on a thread with the synchronous clients. So the loop only parses, verifies and
acks, and a stalled workspace backend never holds up an ack.

Two pools: `core` for anything that may reach Azure, `quick` for what only needs the
database and Slack (the Deny modal, App Home), so a trigger id (valid 3 s) is used in time
even while stalled Azure calls fill the core pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient

from approvals.replies import Reply
from bot.slack.dedupe import InboundLog
from bot.slack.identity import Identity
from bot.wiring import Core
from commands import models as m

if TYPE_CHECKING:
    from bot.slack.workers import WorkerProcesses

log = logging.getLogger(__name__)

T = TypeVar("T")
Pool = Literal["core", "quick"]

# How long work waits for a moment with no acks in flight before it goes ahead anyway.
MAX_DEFER_SECONDS = 0.5
GAP_POLL_SECONDS = 0.002
QUIET_SECONDS = 0.005


@dataclass(frozen=True)
class SlackOptions:
    """Edge behaviour that is not a secret or an endpoint (those are in `Settings`)."""

    command: str = "/aml"
    # Threads for core work. Each waits on the database or Azure; a stalled backend holds
    # one per request, so this bounds how many stalled requests can pile up.
    core_threads: int = 32
    quick_threads: int = 8
    # Also DM the requester what is threaded under their request's card.
    dm_notices: bool = True
    # Processes the work runs in, beside the one that acks (0: threads of this process).
    # See `bot/slack/workers.py`.
    work_processes: int = 0


@dataclass(frozen=True)
class Delivery:
    """One request from Slack, as the thread that handles it needs it."""

    body: dict[str, Any]
    home_team: str | None  # the team the bot is installed in (from auth.test)
    retry_num: int  # X-Slack-Retry-Num; 0 for a first delivery
    # When the acking process handed it over (time.monotonic(), the same clock in every
    # process of the machine): bounds how long it gives way to acks.
    handed_at: float = field(default_factory=time.monotonic)


Job = Callable[["SlackEdge", Delivery], None]


class AckActivity(Protocol):
    """Two numbers in memory shared with the worker processes (a `multiprocessing` array):
    requests in flight, and when (`time.monotonic()`) the last one came or went."""

    def __getitem__(self, index: int) -> float: ...

    def __setitem__(self, index: int, value: float) -> None: ...


IN_FLIGHT, LAST_ACTIVITY = 0, 1


class AcksFirst:
    """Requests from Slack being answered right now, so work can give way to them.

    Work shares the CPUs (threads: the GIL too) with the event loop that acks, so work
    running beside the acks slows them down. A job waits for a moment with no request in
    flight, so a burst of acks is answered first. The wait is bounded from when the job was
    handed over, so under sustained traffic every job still starts at most
    `MAX_DEFER_SECONDS` late. Worker processes see the activity through shared memory
    (`share_with_workers`), so they give way to the acks too (`wait_for_quiet`).
    """

    def __init__(self) -> None:
        self._in_flight = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._shared: AckActivity | None = None

    def share_with_workers(self, activity: AckActivity) -> None:
        self._shared = activity

    @contextmanager
    def answering(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._idle.clear()
            self._publish()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
                self._publish()

    def _publish(self) -> None:
        if self._shared is not None:
            self._shared[IN_FLIGHT] = self._in_flight
            self._shared[LAST_ACTIVITY] = time.monotonic()

    def wait_for_a_gap(self, handed_at: float) -> None:
        self._idle.wait(max(0.0, handed_at + MAX_DEFER_SECONDS - time.monotonic()))


def wait_for_quiet(activity: AckActivity, handed_at: float) -> None:
    """`AcksFirst.wait_for_a_gap` for a worker process, which sees the shared activity.

    Quiet means no request in flight and none for `QUIET_SECONDS`: in a burst the next
    request arrives a fraction of a millisecond after the last ack. Polled by the one
    thread that hands jobs to the worker's pools, so a burst costs one check per
    `GAP_POLL_SECONDS`, not one per waiting job."""
    deadline = handed_at + MAX_DEFER_SECONDS
    while (now := time.monotonic()) < deadline and (
        activity[IN_FLIGHT] > 0 or now - activity[LAST_ACTIVITY] < QUIET_SECONDS
    ):
        time.sleep(GAP_POLL_SECONDS)


def user_id_of(body: dict[str, Any]) -> str | None:
    if isinstance(body.get("user"), dict):
        return str(body["user"]["id"])
    if isinstance(body.get("event"), dict) and body["event"].get("user"):
        return str(body["event"]["user"])
    return str(body["user_id"]) if body.get("user_id") else None


def team_id_of(body: dict[str, Any]) -> str | None:
    if isinstance(body.get("team"), dict):
        return str(body["team"]["id"])
    if isinstance(body.get("user"), dict) and body["user"].get("team_id"):
        return str(body["user"]["team_id"])
    return str(body["team_id"]) if body.get("team_id") else None


class SlackEdge:
    def __init__(
        self,
        core: Core,
        client: WebClient,
        identity: Identity,
        inbound: InboundLog,
        options: SlackOptions,
    ) -> None:
        self.core = core
        self.client = client  # synchronous: used from the threads only
        self.identity = identity
        self.inbound = inbound
        self.options = options
        self._pools = {
            "core": ThreadPoolExecutor(options.core_threads, thread_name_prefix="amlbot-core"),
            "quick": ThreadPoolExecutor(options.quick_threads, thread_name_prefix="amlbot-quick"),
        }
        self.acks_first = AcksFirst()
        self.workers: WorkerProcesses | None = None  # set by build_slack when configured
        # Called after each core call, e.g. to wake the outbox worker so a card appears
        # without waiting for its next poll.
        self.on_core_done: Callable[[], None] = lambda: None

    # ---- on the event loop -------------------------------------------------------------

    def hand_over(self, job: Job, pool: Pool = "core") -> Callable[..., Any]:
        """An ack function for Bolt: ack, then run `job` on a thread."""

        async def ack_and_hand_over(
            ack: AsyncAck,
            body: dict[str, Any],
            context: AsyncBoltContext,
            request: AsyncBoltRequest,
        ) -> None:
            await ack()
            # Handing over (pickling for a worker process) waits for the next turn of the
            # event loop, so the acknowledgement is written to Slack's socket first.
            asyncio.get_running_loop().call_soon(
                self.submit, job, delivery_of(body, context, request), pool
            )

        ack_and_hand_over.__name__ = f"ack_then_{job.__name__}"
        return ack_and_hand_over

    def submit(self, job: Job, delivery: Delivery, pool: Pool = "core") -> None:
        if self.workers is not None and self.workers.submit(job, delivery, pool):
            return
        self._pools[pool].submit(self._guarded, job, delivery)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pools["quick"], functools.partial(fn, *args))

    # ---- on a thread ------------------------------------------------------------------

    def _guarded(self, job: Job, delivery: Delivery) -> None:
        """The edge's error boundary: an unexpected failure is logged with its trace and an
        error id, and the person is given the id (never the trace)."""
        self.acks_first.wait_for_a_gap(delivery.handed_at)
        try:
            job(self, delivery)
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("Slack job %s failed (error id %s)", job.__name__, error_id)
            from bot.slack.listeners.common import tell

            try:
                tell(
                    self,
                    delivery.body,
                    f"Something went wrong on our side (error id `{error_id}`). Try again, "
                    f"and quote the error id to your team lead if it lasts.",
                )
            except Exception:
                log.exception("could not tell the person about error %s", error_id)

    def person(self, delivery: Delivery) -> str | None:
        """The configured person who sent this, or None."""
        body = delivery.body
        user_id = user_id_of(body)
        if user_id is None:
            return None
        team = team_id_of(body)
        foreign = bool(delivery.home_team and team and team != delivery.home_team)
        if foreign and not user_id.startswith("W"):
            return None  # a user id is unique within its team only (`W...` are global)
        person = self.core.service.directory.by_slack_id(user_id)
        if person is not None:
            return person.name
        return self.identity.person_for_unknown(user_id)

    def first_delivery(self, delivery: Delivery) -> bool:
        first = self.inbound.first_time(delivery.body, delivery.retry_num)
        if not first:
            log.info("ignoring a repeated Slack delivery (retry %s)", delivery.retry_num)
        return first

    def run_text(self, person: str, text: str, channel: str | None) -> Reply:
        try:
            return self.core.service.handle_text(person, text, channel)
        finally:
            self.on_core_done()

    def run(self, person: str, command: m.AnyCommand, channel: str | None) -> Reply:
        try:
            return self.core.service.run(person, command, channel)
        finally:
            self.on_core_done()

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def delivery_of(
    body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
) -> Delivery:
    retry = request.headers.get("x-slack-retry-num", ["0"])[0]
    authorized = context.authorize_result
    return Delivery(
        body=body,
        home_team=authorized.team_id if authorized is not None else None,
        retry_num=int(retry) if retry.isdigit() else 0,
    )
