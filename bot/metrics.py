"""Prometheus metrics of one process, served on `/metrics`.

Each process has its own registry (`Metrics`, kept on the `Core`); on a deployment of many
processes each serves its own and Prometheus adds them up. Two kinds:

- what this process did, counted as it happens: commands, acks, inbox items handled, Slack
  API calls, Azure requests (each attempt, from the pipeline policy in
  `workspaces/azure/telemetry.py`), sweep rounds;
- what the database holds, read at scrape time (`StoreCollector`): requests by action and
  state, inbox and outbox depth and age, dead letters, grants. A few indexed aggregates:
  every process answers the same, so a dashboard takes the max, not the sum.

Names follow Prometheus conventions: `amlbot_` prefix, base units in the name (`_seconds`),
`_total` on counters (added by the client).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from approvals import store_counts
from approvals.store import Store
from approvals.tables import GrantStatus, InboxStatus, OutboxStatus
from workspaces.clock import Clock

if TYPE_CHECKING:
    from workspaces.azure.telemetry import AzureCall

__all__ = ["CONTENT_TYPE_LATEST", "CountingWebClient", "Metrics", "StoreCollector"]

# Acks must stay far below Slack's 3 s; the buckets resolve the range that matters.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# From the delivery kept to its reply: most are quick, an Azure change takes minutes.
REPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
# One HTTP request to Azure: ARM answers most within a second; a slow one takes tens.
AZURE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The instruments of one process, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "amlbot_commands",
            "Commands run, by command and outcome (ok, refused, error).",
            ["command", "outcome"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "amlbot_slack_ack_seconds",
            "From a Slack delivery reaching a listener to its ack (kept in the inbox first).",
            ["handler"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.reply_seconds = Histogram(
            "amlbot_inbox_reply_seconds",
            "From an inbox item received to handled by a worker.",
            ["handler"],
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.inbox_handled = Counter(
            "amlbot_inbox_items_handled",
            "Inbox items a worker of this process ran, by handler and outcome "
            "(ok, failed: retried later, dead).",
            ["handler", "outcome"],
            registry=r,
        )
        self.slack_api_calls = Counter(
            "amlbot_slack_api_calls",
            "Slack Web API calls, by method and status (ok, Slack's error code, or the "
            "exception's type).",
            ["method", "status"],
            registry=r,
        )
        self.slack_posts_in_doubt = Counter(
            "amlbot_slack_posts_in_doubt",
            "Posts retried after an attempt whose answer never came (a crash, a timeout, a "
            "5xx), by outcome: found (the earlier post was there, not posted again), "
            "not_found (posted now), unverifiable (no history scope: posted again, may "
            "show twice).",
            ["outcome"],
            registry=r,
        )
        self.azure_requests = Counter(
            "amlbot_azure_requests",
            "HTTP requests sent to Azure, every attempt (retries included), by operation "
            "(as Azure's RBAC names it: Microsoft.X/type/.../read|write|delete|action) and "
            "status (the HTTP status, e.g. 429 when throttled, or the exception's type).",
            ["operation", "status"],
            registry=r,
        )
        self.azure_retries = Counter(
            "amlbot_azure_retries",
            "Attempts that repeated an earlier one of the same request (after a 429, a 5xx "
            "or a failed connection), by operation.",
            ["operation"],
            registry=r,
        )
        self.azure_seconds = Histogram(
            "amlbot_azure_request_duration_seconds",
            "How long one attempt of an Azure request took, by operation.",
            ["operation"],
            buckets=AZURE_BUCKETS,
            registry=r,
        )
        self.sweep_seconds = Histogram(
            "amlbot_sweep_duration_seconds",
            "How long a round of the periodic sweeps took.",
            buckets=SWEEP_BUCKETS,
            registry=r,
        )
        self.sweep_last_success = Gauge(
            "amlbot_sweep_last_success_timestamp_seconds",
            "Unix time the last sweep round of this process finished without an error.",
            registry=r,
        )
        self.scheduled_skips = Counter(
            "amlbot_scheduled_rounds_skipped",
            "Rounds of a periodic job (the sweeps, or a chore beside them) not started because "
            "the previous round was still running, by job.",
            ["job"],
            registry=r,
        )
        self._store_watched = False

    def watch_store(self, store: Store, clock: Clock) -> None:
        """Read the database's gauges at each scrape (once per registry)."""
        if not self._store_watched:
            self.registry.register(StoreCollector(store, clock))
            self._store_watched = True

    def exposition(self) -> bytes:
        """The text format of every metric; may query the database (not on an event loop)."""
        return generate_latest(self.registry)

    def count_command(self, command: str, ok: bool, error_id: str | None) -> None:
        outcome = "error" if error_id else ("ok" if ok else "refused")
        self.commands.labels(command=command, outcome=outcome).inc()

    def count_azure_call(self, call: AzureCall) -> None:
        """The recorder of every Azure client this process builds (`on_azure_call`)."""
        self.azure_requests.labels(operation=call.operation, status=call.status).inc()
        if call.retry:
            self.azure_retries.labels(operation=call.operation).inc()
        self.azure_seconds.labels(operation=call.operation).observe(call.seconds)

    @contextmanager
    def timed_sweep(self) -> Iterator[None]:
        started = time.perf_counter()
        yield  # an exception passes through: no success recorded
        self.sweep_seconds.observe(time.perf_counter() - started)
        self.sweep_last_success.set(time.time())


class StoreCollector(Collector):
    """Gauges computed from the database at scrape time."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def describe(self) -> list[Any]:
        return []  # computed at scrape: no database call at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock.now()
        requests = GaugeMetricFamily(
            "amlbot_requests",
            "Requests in the database, by action and state.",
            labels=["action", "state"],
        )
        inbox_items = GaugeMetricFamily(
            "amlbot_inbox_items",
            "Inbox items by status (pending, running, dead).",
            labels=["status"],
        )
        inbox_retrying = GaugeMetricFamily(
            "amlbot_inbox_retrying_items", "Pending inbox items that failed at least once."
        )
        inbox_oldest = GaugeMetricFamily(
            "amlbot_inbox_oldest_age_seconds", "Age of the oldest pending or running inbox item."
        )
        outbox_messages = GaugeMetricFamily(
            "amlbot_outbox_messages",
            "Outbox messages not delivered, by status (pending, dead, failed).",
            labels=["status"],
        )
        outbox_retrying = GaugeMetricFamily(
            "amlbot_outbox_retrying_messages", "Pending outbox messages tried at least once."
        )
        outbox_oldest = GaugeMetricFamily(
            "amlbot_outbox_oldest_age_seconds", "Age of the oldest pending outbox message."
        )
        grants = GaugeMetricFamily(
            "amlbot_grants",
            "Access grants by status (active, revoking, revoked).",
            labels=["status"],
        )
        counts = store_counts.read(self.store)
        for action, state, count in counts.requests:
            requests.add_metric([action, state], count)
        inbox_counts, inbox_retries, inbox_first = (
            counts.inbox,
            counts.inbox_retrying,
            counts.inbox_oldest,
        )
        outbox_counts, outbox_retries, outbox_first = (
            counts.outbox,
            counts.outbox_retrying,
            counts.outbox_oldest,
        )
        grant_counts = counts.grants
        for inbox_status in (InboxStatus.PENDING, InboxStatus.RUNNING, InboxStatus.DEAD):
            inbox_items.add_metric([inbox_status], inbox_counts.get(inbox_status, 0))
        inbox_retrying.add_metric([], inbox_retries or 0)
        inbox_oldest.add_metric([], (now - inbox_first).total_seconds() if inbox_first else 0.0)
        for outbox_status in (OutboxStatus.PENDING, OutboxStatus.DEAD, OutboxStatus.FAILED):
            outbox_messages.add_metric([outbox_status], outbox_counts.get(outbox_status, 0))
        outbox_retrying.add_metric([], outbox_retries or 0)
        outbox_oldest.add_metric([], (now - outbox_first).total_seconds() if outbox_first else 0.0)
        for grant_status in sorted({GrantStatus.ACTIVE, GrantStatus.REVOKED, *grant_counts}):
            grants.add_metric([grant_status], grant_counts.get(grant_status, 0))
        yield from (
            requests,
            inbox_items,
            inbox_retrying,
            inbox_oldest,
            outbox_messages,
            outbox_retrying,
            outbox_oldest,
            grants,
        )


class CountingWebClient(WebClient):
    """The synchronous Slack client, counting every call by method and status."""

    def __init__(self, *args: Any, count: Callable[[str, str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count = count

    def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().api_call(api_method, *args, **kwargs)
        except SlackApiError as refused:
            self._count(api_method, str(refused.response.get("error") or "error"))
            raise
        except Exception as exc:
            self._count(api_method, type(exc).__name__)
            raise
        self._count(api_method, "ok")
        return response
