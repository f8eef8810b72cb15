"""Builds the Slack edge: the Bolt `AsyncApp`, its listeners, and the outbox `Deliverer`.

Why `AsyncApp` with `process_before_response=True`, and work handed over: the event
loop only verifies, parses and acks, and the listener returns right after `ack()`; the
work (database, Azure, Web API calls) runs on `SlackEdge`'s thread pools with the
synchronous clients, in worker processes when `SlackOptions.work_processes` is set (as
`amlbot serve` does; see `workers.py`). Bolt's default threaded `App` polls for `ack()`
every 10 ms on a 5-thread pool, so slow work pushes later acks past Slack's 3 s; Bolt's
own lazy listeners deep-copy each request and run their async work on the loop, between
the acks (measured slower: see bench/ack_latency.py and the README).

Extension: `extra_registrars` are `Callable[[AsyncApp, SlackEdge], None]`, called once
after the built-in listeners. Register with `edge.hand_over(job)` as the listener, where
`job(edge, delivery)` is a module-level function (it may run in a worker process) run on
a thread after the ack (see `listeners/decisions.py`). Outbox kinds are added with
`bot.slack.delivery.register_renderer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.dedupe import InboundLog
from bot.slack.delivery import SlackDeliverer
from bot.slack.edge import SlackEdge, SlackOptions
from bot.slack.identity import Identity
from bot.slack.listeners import command, decisions, forms, home
from bot.wiring import Core

Registrar = Callable[[AsyncApp, SlackEdge], None]

DEFAULT_API_URL = "https://slack.com/api/"
BUILT_IN: tuple[Registrar, ...] = (
    command.register,
    decisions.register,
    forms.register,
    home.register,
)


class SlackSettingsError(ValueError):
    """The environment lacks what this mode of the Slack edge needs."""


def missing_settings(settings: Settings, *, socket_mode: bool) -> list[str]:
    """What is missing to run in the given mode; empty when all is there."""
    problems = []
    if not _secret(settings.slack_bot_token):
        problems.append("SLACK_BOT_TOKEN (the bot token, xoxb-...) is not set")
    if socket_mode and not _secret(settings.slack_app_token):
        problems.append(
            "SLACK_APP_TOKEN (an app-level token, xapp-..., with connections:write) is not "
            "set; Socket Mode needs it. Or serve HTTP: `amlbot serve --http`"
        )
    if not socket_mode and not _secret(settings.slack_signing_secret):
        problems.append(
            "SLACK_SIGNING_SECRET is not set; HTTP mode verifies every request with it and "
            "will not run without"
        )
    return problems


def api_url(settings: Settings) -> str:
    url = settings.slack_api_url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


@dataclass
class SlackBot:
    """The edge, assembled: what `serve` runs and tests drive."""

    app: AsyncApp
    edge: SlackEdge
    deliverer: SlackDeliverer
    web_client: WebClient  # synchronous, for threads: the deliverer, e-mail lookups
    # For the HTTP endpoint's own check in front of Bolt (`http.py`); never shown.
    signing_secret: SecretStr = field(default=SecretStr(""), repr=False)


def build_slack(
    core: Core,
    settings: Settings,
    *,
    socket_mode: bool = False,
    options: SlackOptions | None = None,
    extra_registrars: Iterable[Registrar] = (),
) -> SlackBot:
    problems = missing_settings(settings, socket_mode=socket_mode)
    if problems:
        raise SlackSettingsError("; ".join(problems))
    options = options or SlackOptions()
    token = _secret(settings.slack_bot_token)
    base_url = api_url(settings)
    async_client = AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    # No 429 retry here: the outbox worker reschedules by Retry-After instead of blocking.
    web_client = WebClient(token=token, base_url=base_url, timeout=10)
    identity = Identity(core.service.directory, core.store, core.clock, web_client)
    edge = SlackEdge(core, web_client, identity, InboundLog(core.store, core.clock), options)
    app = AsyncApp(
        name="amlbot",
        client=async_client,
        # Verification stays on in both modes; Bolt skips it only for Socket Mode
        # requests, which arrive over the websocket the app token opened.
        signing_secret=_secret(settings.slack_signing_secret),
        request_verification_enabled=True,
        process_before_response=True,
    )
    registrars = tuple(extra_registrars)
    for registrar in (*BUILT_IN, *registrars):
        registrar(app, edge)
    if options.work_processes > 0:
        from bot.slack.workers import WorkerProcesses

        edge.workers = WorkerProcesses(
            settings,
            core.config,
            options,
            options.work_processes,
            registrars,
            socket_mode=socket_mode,
        )
        edge.acks_first.share_with_workers(edge.workers.ack_activity)
    deliverer = SlackDeliverer(core, web_client, identity, dm_notices=options.dm_notices)
    return SlackBot(
        app=app,
        edge=edge,
        deliverer=deliverer,
        web_client=web_client,
        signing_secret=SecretStr(_secret(settings.slack_signing_secret)),
    )


def create_app(
    core: Core,
    settings: Settings,
    *,
    socket_mode: bool = False,
    extra_registrars: Iterable[Registrar] = (),
) -> AsyncApp:
    """The Bolt app alone (e.g. to mount elsewhere); `build_slack` also gives the rest."""
    return build_slack(
        core, settings, socket_mode=socket_mode, extra_registrars=extra_registrars
    ).app


def _secret(value: object) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else ""
