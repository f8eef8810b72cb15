"""The Slack `Deliverer`: turns outbox rows into Slack messages.

Dispatch is on `row.kind` through the table it is given (`bot.slack.renderers.RENDERERS`:
every kind in one place). A renderer gets the row and a `DeliveryContext` whose helpers
post, thread, DM and map Slack's errors onto the worker's: `DeliveryPaused` (a 429 pauses
the method, or the method and channel, for its Retry-After: for every message, through
`OutboxPauses`), `RetryableDeliveryError` (5xx, timeouts; they pause the method briefly
so one message probes while the rest wait) and `PermanentDeliveryError` (`channel_not_found`, ...).
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from approvals.outbox_pauses import OutboxPauses, Pause
from approvals.slack_cards import CardStore
from approvals.tables import OutboxRow
from bot.outbox_worker import DeliveryPaused, PermanentDeliveryError, RetryableDeliveryError
from bot.slack.identity import Identity
from bot.slack.views.card import SlackMessage, notice
from bot.wiring import Core

log = logging.getLogger(__name__)

Renderer = Callable[[OutboxRow, "DeliveryContext"], None]

# Slack answers these when trying again later can work.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# The bot's own credentials are wrong: an operator fixes them, then the messages flow.
# Retried (with the worker's capped backoff) rather than dropped.
CREDENTIAL_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "account_inactive"})
UNKNOWN_KIND_RETRY_SECONDS = 300.0
# A rejected token is not fixed in seconds: probe it once a minute, not at the 5xx pace.
CREDENTIAL_RETRY = timedelta(minutes=1)
# Slack rate-limits these per channel (about one message a second each); others per method.
PER_CHANNEL_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.scheduleMessage"})
# Every post carries its outbox row and step as message metadata, to be found by.
POST_EVENT_TYPE = "amlbot_outbox_post"
# Looking for a post in doubt starts this long before its attempt (clocks differ).
IN_DOUBT_LOOKBACK = timedelta(minutes=2)
# Pages of 200 messages read at most; a busier channel gets the message posted again.
IN_DOUBT_PAGES = 10


def call_scopes(method: str, channel: object) -> list[str]:
    """The pause scopes a call falls under, widest first: a failing Slack pauses the
    method, a 429 pauses what Slack limits (the method and channel where it is per channel)."""
    if method in PER_CHANNEL_METHODS and isinstance(channel, str) and channel:
        return [method, f"{method}:{channel}"]
    return [method]


class SlackRefusedError(PermanentDeliveryError):
    """Slack refused the call for good; `error` is Slack's code (`channel_not_found`, ...)."""

    def __init__(self, method: str, error: str, detail: object = None) -> None:
        super().__init__(f"{method}: {error}" + (f" {detail}" if detail else ""))
        self.method = method
        self.error = error


class DeliveryContext:
    """What a renderer needs: the core, the Slack client, and idempotent posting helpers."""

    def __init__(
        self,
        core: Core,
        client: WebClient,
        identity: Identity,
        cards: CardStore,
        *,
        dm_notices: bool,
        pauses: OutboxPauses | None = None,
    ) -> None:
        self.core = core
        self.client = client
        self.identity = identity
        self.cards = cards
        self.dm_notices = dm_notices
        self.pauses = pauses or OutboxPauses(core.store, core.clock)
        self._bot_id: str | None = None

    def call(
        self, method: str, *, paused_with: list[str] | None = None, **kwargs: Any
    ) -> SlackResponse:
        """One Web API call, unless its method (or channel) is paused; Slack's failures
        sorted into wait-for-the-pause, retry-later or never. A call that is part of another
        (a post's look-up before it) is `paused_with` that one's scopes, so a failing Slack
        is still probed by one call at a time."""
        scopes = paused_with or call_scopes(method, kwargs.get("channel"))
        pause, ran_out = self.pauses.blocking(scopes)
        if pause is not None:
            raise _paused(method, pause)
        try:
            response = self.client.api_call(method, json=kwargs)
        except SlackApiError as exc:
            raise self._failure(method, scopes, exc) from exc
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,
        ) as exc:
            reason = f"{method}: {type(exc).__name__}: {exc}"
            raise self._retry_later(reason, self.pauses.failing(scopes[0], reason)) from exc
        self.pauses.lifted(ran_out)
        return response

    def _failure(self, method: str, scopes: list[str], exc: SlackApiError) -> Exception:
        failure = _classify(method, exc)
        if isinstance(failure, _RateLimited):
            # Slack's own word on when to come back, for every message on this scope.
            pause = self.pauses.rate_limited(
                scopes[-1], timedelta(seconds=failure.retry_after), str(failure)
            )
            return _paused(method, pause)
        if isinstance(failure, _Transient):
            at_least = CREDENTIAL_RETRY if failure.credentials else None
            return self._retry_later(
                str(failure), self.pauses.failing(scopes[0], str(failure), at_least=at_least)
            )
        return failure

    def _retry_later(self, reason: str, pause: Pause) -> RetryableDeliveryError:
        wait = (pause.until - self.core.clock.now()).total_seconds()
        return RetryableDeliveryError(
            reason,
            retry_after=max(wait, 0.001),
            failing_scope=pause.scope,
            failures_in_a_row=pause.failures,
        )

    def post(
        self,
        row: OutboxRow,
        step: str,
        *,
        channel: str,
        message: SlackMessage,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        """`chat.postMessage` once per (row, step), even across a crash: the attempt is
        written down first and the message carries its (row, step) as metadata, so a retry
        after an answer that never came finds the message instead of posting it twice."""
        earlier = self.cards.attempting(row.id, step, channel)
        if earlier is not None and earlier.channel and earlier.ts:
            return earlier.channel, earlier.ts  # a retried row skips what was sent
        if earlier is not None:  # in doubt: an attempt whose answer never came
            since = earlier.attempted_at or self.core.clock.now()
            found = self._find_posted(row.id, step, channel, thread_ts, since)
            if found is not None:
                self.cards.record_step(row.id, step, *found)
                return found
        extra: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        try:
            response = self.call(
                "chat.postMessage",
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                metadata=_post_metadata(row.id, step),
                **extra,
            )
        except (DeliveryPaused, PermanentDeliveryError):
            # Slack answered, and did not post (or the call was never made).
            self.cards.not_posted(row.id, step)
            raise
        # A 5xx, a timeout or a dropped connection leave the attempt in doubt: kept.
        posted = (str(response["channel"]), str(response["ts"]))
        self.cards.record_step(row.id, step, *posted)
        return posted

    def _find_posted(
        self, outbox_id: int, step: str, channel: str, thread_ts: str | None, since: datetime
    ) -> tuple[str, str] | None:
        """The message an earlier attempt of this step posted, if Slack shows it.

        Reads the thread (or the channel's history) from just before the attempt, which
        needs the history scopes; without them the message is posted again, and the log
        and `amlbot_slack_posts_in_doubt_total{outcome="unverifiable"}` say so."""
        wanted = _post_metadata(outbox_id, step)
        try:
            probe = call_scopes("chat.postMessage", channel)
            conversation = self._conversation_of(channel, probe)
            oldest = f"{(since - IN_DOUBT_LOOKBACK).timestamp():.6f}"
            method, where = (
                ("conversations.replies", {"ts": thread_ts})
                if thread_ts
                else ("conversations.history", {})
            )
            cursor = ""
            for _ in range(IN_DOUBT_PAGES):
                answer = self.call(
                    method,
                    paused_with=probe,
                    channel=conversation,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    **where,
                    **({"cursor": cursor} if cursor else {}),
                )
                for shown in answer.get("messages") or []:
                    if shown.get("metadata") == wanted and self._is_ours(shown, probe):
                        self._count_in_doubt("found")
                        return conversation, str(shown["ts"])
                cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    break
        except SlackRefusedError as refused:
            log.warning(
                "cannot tell whether outbox message %s (%s) reached Slack before the last "
                "attempt was cut short (%s%s); posting it again, so it may show twice",
                outbox_id,
                step,
                refused.error,
                " (grant the bot the history scopes in the manifest)"
                if refused.error == "missing_scope"
                else "",
            )
            self._count_in_doubt("unverifiable")
            return None
        self._count_in_doubt("not_found")
        return None

    def _conversation_of(self, channel: str, probe: list[str]) -> str:
        """A user id's DM with the bot (where a post to the user id went), else `channel`."""
        if not channel.startswith(("U", "W")):
            return channel
        opened = self.call("conversations.open", paused_with=probe, users=channel)
        return str(opened["channel"]["id"])

    def _is_ours(self, shown: Mapping[str, Any], probe: list[str]) -> bool:
        # Another app in the channel could carry the same metadata: only our bot's count.
        if self._bot_id is None:
            self._bot_id = str(self.call("auth.test", paused_with=probe).get("bot_id") or "")
        return not self._bot_id or shown.get("bot_id") == self._bot_id

    def _count_in_doubt(self, outcome: str) -> None:
        self.core.metrics.slack_posts_in_doubt.labels(outcome=outcome).inc()

    def user_id(self, person: str) -> str:
        user_id = self.identity.slack_id_of(person)
        if user_id is None:
            raise PermanentDeliveryError(
                f"{person} has no Slack user id (configure `slack_id`, or an e-mail Slack knows)"
            )
        return user_id

    def tell_person(
        self, row: OutboxRow, person: str, text: str, request_id: int | None = None
    ) -> None:
        """About a request with a card: a reply in the card's thread naming the person,
        where the leads see it too, plus a DM (unless turned off), because a mention does
        not reach someone who is not in the channel. Anything else: a DM."""
        user_id = self.user_id(person)
        card = self.cards.channel_card(request_id) if request_id is not None else None
        if card is not None:
            self.post(
                row,
                "thread",
                channel=card.channel,
                thread_ts=card.ts,
                message=notice(text, prefix=f"<@{user_id}> "),
            )
        if card is None or self.dm_notices:
            self.post(row, "dm", channel=user_id, message=notice(text))

    def tell_channel(
        self, row: OutboxRow, workspace: str, text: str, request_id: int | None = None
    ) -> None:
        ws = self.core.config.workspaces.get(workspace)
        if ws is None or ws.channel is None:
            raise PermanentDeliveryError(f"workspace `{workspace}` has no Slack channel configured")
        card = self.cards.channel_card(request_id) if request_id is not None else None
        thread = card.ts if card is not None and card.channel == ws.channel else None
        self.post(row, "channel", channel=ws.channel, thread_ts=thread, message=notice(text))


class SlackDeliverer:
    """Implements `bot.outbox_worker.Deliverer` for Slack."""

    def __init__(
        self,
        core: Core,
        client: WebClient,
        identity: Identity,
        *,
        renderers: Mapping[str, Renderer],
        dm_notices: bool = True,
        pauses: OutboxPauses | None = None,
    ) -> None:
        self.context = DeliveryContext(
            core,
            client,
            identity,
            CardStore(core.store, core.clock),
            dm_notices=dm_notices,
            pauses=pauses,
        )
        self._renderers = renderers

    def deliver(self, row: OutboxRow) -> None:
        renderer = self._renderers.get(row.kind)
        if renderer is None:
            # Maybe a newer replica's kind during a rolling deploy: keep it for later.
            raise RetryableDeliveryError(
                f"no Slack renderer registered for {row.kind!r}",
                retry_after=UNKNOWN_KIND_RETRY_SECONDS,
            )
        renderer(row, self.context)


class _RateLimited(Exception):
    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Transient(Exception):
    def __init__(self, reason: str, *, credentials: bool = False) -> None:
        super().__init__(reason)
        self.credentials = credentials


def _post_metadata(outbox_id: int, step: str) -> dict[str, Any]:
    return {"event_type": POST_EVENT_TYPE, "event_payload": {"outbox_id": outbox_id, "step": step}}


def _paused(method: str, pause: Pause) -> DeliveryPaused:
    why = "rate limited" if pause.cause == "rate_limited" else "failing"
    return DeliveryPaused(
        f"{method}: {pause.scope} paused until {pause.until.isoformat()} ({why})",
        scope=pause.scope,
        until=pause.until,
    )


def _classify(method: str, exc: SlackApiError) -> Exception:
    response = exc.response
    status = response.status_code
    error = str(response.get("error") or "") if isinstance(response.data, dict) else ""
    if status == 429 or error == "ratelimited":
        return _RateLimited(f"{method}: rate limited", _retry_after(response.headers))
    if status >= 500 or error in TRANSIENT_ERRORS:
        return _Transient(f"{method}: Slack answered {status} {error}".strip())
    if error in CREDENTIAL_ERRORS:
        log.error("Slack rejects the bot token (%s): fix SLACK_BOT_TOKEN", error)
        return _Transient(f"{method}: {error} (the bot token is not accepted)", credentials=True)
    detail = response.get("response_metadata") if isinstance(response.data, dict) else None
    return SlackRefusedError(method, error or f"HTTP {status}", detail)


def _retry_after(headers: Mapping[str, Any]) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 1.0)
            except (TypeError, ValueError):
                break
    return 30.0
