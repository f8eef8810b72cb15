"""What every listener shares: the core, who is who, and the way work leaves the event loop.

A listener does two things on the event loop: it writes the delivery to the inbox
(`approvals/inbox.py`) and acks. Only then does Slack hear "accepted", so a crash, a deploy
or a dead worker never loses what was acknowledged: a worker (in this process or any other,
see `bot/work.py`) claims the item and runs its job `(edge, delivery)` with the synchronous
clients. Secrets are withheld from the body before it is written (`bot/slack/deliveries.py`).

What must happen within Slack's 3-second trigger window (opening a modal) is run by this
process right after the ack, on its `quick` threads; the item is accepted already claimed
by this process, so no worker runs it too unless this process dies first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from prometheus_client import Histogram
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient

from approvals import inbox
from approvals.dead_letters import tell_leads_of_dead_item
from approvals.inbox import InboxItem
from approvals.inbox_accept import Arrival
from approvals.inbox_writer import KeepUnconfirmed, acks_writer
from approvals.replies import Reply
from bot.lease_keeper import LeaseKeeper
from bot.logs import correlated
from bot.slack.deliveries import Delivery, delivery_key, inbox_payload
from bot.slack.identity import Identity
from bot.slack.payloads import team_id_of, user_id_of
from bot.slack.response_urls import ResponseUrls
from bot.slack.telling import tell
from bot.wiring import Core
from bot.work import InboxWorker
from commands import models as m

log = logging.getLogger(__name__)

# A slash command's ack text, shown to the person, when its delivery could not be kept.
_NOT_KEPT = (
    "amlbot could not take this right now (it is restarting, or its database is "
    "unreachable or busy). Nothing was done; try again in a minute."
)
# ... or when the database did not answer in time: it may have kept it.
_UNSURE = (
    "amlbot could not confirm it took this (its database is slow to answer). If it did, "
    "the answer comes here shortly; if nothing comes within a minute, try again."
)

T = TypeVar("T")
# "worker": any worker, whenever it claims the item; "edge": this process, right after the
# ack (Slack's trigger id is valid for 3 s).
Where = Literal["worker", "edge"]
HANDLER_PREFIX = "slack."
# Slack errors that a retry cannot change.
PERMANENT_SLACK_ERRORS = frozenset(
    {
        "user_not_found",
        "users_not_found",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_arguments",
        "invalid_blocks",
        "expired_trigger_id",
        "invalid_trigger_id",
        "trigger_exchanged",
        "not_found",
        "view_not_found",
        "message_not_found",
        "cant_update_message",
        "user_is_bot",
        "account_inactive",
    }
)


@dataclass(frozen=True)
class SlackOptions:
    """Edge behaviour that is not a secret or an endpoint (those are in `Settings`)."""

    command: str = "/aml"
    # Threads for the trigger-window work run by the acking process (modals).
    quick_threads: int = 8
    # Threads that run inbox items in a worker: each may wait on Azure for minutes.
    work_threads: int = 16
    # Also DM the requester what is threaded under their request's card.
    dm_notices: bool = True
    # How long an item this process runs itself (a modal) is held before a worker may take
    # it over; renewed while it runs, so only a dead process loses it.
    edge_lease: timedelta = inbox.LEASE


Job = Callable[["SlackEdge", Delivery], None]


class SlackEdge:
    def __init__(
        self,
        core: Core,
        client: WebClient,
        identity: Identity,
        options: SlackOptions,
        *,
        holder: str | None = None,
    ) -> None:
        self.core = core
        self.client = client  # synchronous: used from the threads only
        self.identity = identity
        self.options = options
        # Replies to response_urls, over connections kept open for every work thread.
        self.response_urls = ResponseUrls()
        self.holder = holder or f"edge-{uuid.uuid4().hex[:12]}"
        self.jobs: dict[str, Job] = {}
        self._quick = ThreadPoolExecutor(options.quick_threads, thread_name_prefix="amlbot-quick")
        # Called after each core call, e.g. to wake the outbox worker so a card appears
        # without waiting for its next poll.
        self.on_core_done: Callable[[], None] = lambda: None
        # Called after an item is accepted, e.g. to wake a worker in this process.
        self.on_accepted: Callable[[], None] = lambda: None
        self.accepting = True  # False once shutting down: new deliveries are refused
        # SIGTERM seen: readiness says no, so the load balancer stops sending.
        self.draining = False
        # The inbox worker in this process, when there is one (for readiness).
        self.worker: InboxWorker | None = None
        # The acks' inbox writes, committed in groups by the event loop itself.
        self.inbox_writer = acks_writer(
            core.store.engine.url.render_as_string(hide_password=False),
            core.clock.now,
            lease=options.edge_lease,
        )
        # The items this process runs itself, their leases renewed until done.
        self._at_edge: set[int] = set()
        self._at_edge_lock = threading.Lock()
        self._edge_leases = LeaseKeeper(
            core.store,
            self.holder,
            core.clock,
            options.edge_lease,
            self._held_at_edge,
            name="amlbot-edge-leases",
        )
        self._ack_timers: dict[str, Histogram] = {}
        self._home_team: str | None = None
        self._home_team_lock = threading.Lock()

    # ---- on the event loop -------------------------------------------------------------

    def hand_over(self, job: Job, where: Where = "worker") -> Callable[..., Any]:
        """A Bolt listener: keep the delivery in the inbox, ack, and have `job` run it."""
        name = self.register_job(job)

        async def accept_and_ack(
            ack: AsyncAck,
            body: dict[str, Any],
            context: AsyncBoltContext,
            request: AsyncBoltRequest,
        ) -> None:
            await self.accept_then_ack(name, ack, body, context, request, where)

        accept_and_ack.__name__ = f"accept_{job.__name__}"
        return accept_and_ack

    def register_job(self, job: Job) -> str:
        """The inbox handler name of `job`: stable across versions, since items outlive a
        deploy (a job's name is its identity; two jobs may not share one)."""
        name = HANDLER_PREFIX + job.__name__
        known = self.jobs.get(name)
        if known is not None and known is not job:
            raise ValueError(f"two Slack jobs are named {job.__name__!r}")
        self.jobs[name] = job
        return name

    async def accept_then_ack(
        self,
        handler: str,
        ack: AsyncAck,
        body: dict[str, Any],
        context: AsyncBoltContext,
        request: AsyncBoltRequest,
        where: Where = "worker",
        **ack_args: Any,
    ) -> None:
        """Write first, ack after: Slack hears "accepted" only for what is kept."""
        started = time.perf_counter()
        payload = inbox_payload(body, context, request)
        loop = asyncio.get_running_loop()
        claimed_by = self.holder if where == "edge" else None
        key = delivery_key(body)  # once: an unkeyed delivery gets a fresh key each call
        try:
            if not self.accepting:
                raise RuntimeError("shutting down")
            item_id = await self.inbox_writer.keep(Arrival(key, handler, payload, claimed_by))
        except Exception as failed:
            # The database's state (unreachable, slow, locked by another writer): no trace.
            if isinstance(failed, (KeepUnconfirmed, ConnectionError, TimeoutError)):
                log.error("could not keep a Slack delivery (%s); not acknowledging it", failed)
            else:
                log.exception("could not keep a Slack delivery; not acknowledging it")
            if "command" in body:
                # Slack shows a slash command's ack text to the person; better than a timeout.
                await ack(text=_NOT_KEPT if not isinstance(failed, KeepUnconfirmed) else _UNSURE)
                return
            raise  # a 500: Slack retries events, and shows the person a failed click
        await ack(**ack_args)
        self._ack_timer(handler).observe(time.perf_counter() - started)
        if item_id is None:
            log.info("ignoring a repeated Slack delivery (%s)", key.split(":", 1)[0])
        elif where == "edge":
            # Into the pool once the ack is on its way; the modal must open within 3 s.
            loop.call_soon(self._quick.submit, self._run_at_edge, item_id, key, handler, payload)
        else:
            self.on_accepted()

    def _ack_timer(self, handler: str) -> Histogram:
        """The ack histogram's child for `handler`, found once (a label lookup takes a lock
        and hashes the labels on every call)."""
        timer = self._ack_timers.get(handler)
        if timer is None:
            timer = self._ack_timers[handler] = self.core.metrics.ack_seconds.labels(handler)
        return timer

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._quick, functools.partial(fn, *args))

    # ---- on a thread ------------------------------------------------------------------

    def _run_at_edge(self, item_id: int, key: str, handler: str, payload: dict[str, Any]) -> None:
        with self._at_edge_lock:
            self._at_edge.add(item_id)
        self._edge_leases.start()
        with correlated(key):
            try:
                self.run_job(handler, payload)
            except Exception:
                error_id = uuid.uuid4().hex[:8]
                log.exception("Slack job %s failed (error id %s)", handler, error_id)
                self.tell_failure(payload["body"], error_id)
            finally:
                with self._at_edge_lock:
                    self._at_edge.discard(item_id)
                try:
                    inbox.complete(self.core.store, item_id, self.holder, self.core.clock.now())
                except Exception:
                    log.exception("marking an edge-run Slack item done failed")

    def _held_at_edge(self) -> list[int]:
        with self._at_edge_lock:
            return list(self._at_edge)

    def run_item(self, item: InboxItem) -> None:
        """An inbox handler: run the Slack job the item names (in a worker). Slack refusing
        a call for good (the user or channel is gone, the trigger expired) ends the item:
        trying again would get the same answer."""
        from slack_sdk.errors import SlackApiError

        try:
            self.run_job(item.handler, item.payload)
        except SlackApiError as refused:
            error = str(refused.response.get("error") or "")
            if error not in PERMANENT_SLACK_ERRORS:
                raise
            log.warning(
                "Slack refused a call of %s for good (%s); not retried", item.handler, error
            )

    def run_job(self, handler: str, payload: dict[str, Any]) -> None:
        job = self.jobs[handler]
        delivery = Delivery(
            body=payload["body"],
            home_team=payload.get("home_team") or self.home_team(),
            retry_num=int(payload.get("retry_num") or 0),
            secret=payload.get("secret"),
        )
        job(self, delivery)

    def tell_failure(self, body: dict[str, Any], error_id: str) -> None:
        try:
            tell(
                self,
                body,
                f"Something went wrong on our side (error id `{error_id}`). Try again, "
                f"and quote the error id to your team lead if it lasts.",
            )
        except Exception:
            log.exception("could not tell the person about error %s", error_id)

    def dead_letter(self, item: InboxItem, error_id: str) -> None:
        """Told when an item failed every attempt: the person hears it plainly, and the
        leads of their workspaces are told where it is kept (the inbox, by its number)."""
        body = item.payload.get("body")
        if not item.handler.startswith(HANDLER_PREFIX) or not isinstance(body, dict):
            return
        self.tell_failure(body, error_id)
        delivery = Delivery(body=body, home_team=item.payload.get("home_team"), retry_num=0)
        person = self.person(delivery)
        if person is None:
            return
        tell_leads_of_dead_item(
            self.core.store,
            self.core.service.directory,
            item,
            person,
            error_id,
            self.core.clock.now(),
        )
        self.on_core_done()

    def home_team(self) -> str | None:
        """The team the bot is installed in; asked of Slack once (it may have been down
        when the item was accepted)."""
        with self._home_team_lock:
            if self._home_team is None:
                self._home_team = str(self.client.auth_test().get("team_id") or "") or None
            return self._home_team

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

    def refuse_secret(self, person: str, delivery: Delivery) -> Reply | None:
        """The refusal when the person typed a secret (withheld before it was kept)."""
        if delivery.secret is None:
            return None
        return self.core.service.refuse_secret(person, delivery.secret)

    def run_text(self, person: str, text: str, channel: str | None) -> Reply:
        try:
            reply = self.core.service.handle_text(person, text, channel)
        finally:
            self.on_core_done()
        self.core.metrics.count_command(reply.command or "invalid", reply.ok, reply.error_id)
        return reply

    def run(self, person: str, command: m.AnyCommand, channel: str | None) -> Reply:
        try:
            reply = self.core.service.run(person, command, channel)
        finally:
            self.on_core_done()
        self.core.metrics.count_command(command.kind, reply.ok, reply.error_id)
        return reply

    def close(self) -> None:
        self.accepting = False
        self.inbox_writer.close()
        self._quick.shutdown(wait=True, cancel_futures=False)
        self._edge_leases.stop()
        self.response_urls.close()
