"""Builds the Slack edge: the Bolt `AsyncApp`, its listeners, and the outbox `Deliverer`.

Why `AsyncApp` with `process_before_response=True`: the event loop only verifies, parses,
writes the delivery to the inbox and acks; the work (database, Azure, Web API calls) is
claimed from the inbox by workers (`bot/work.py`) in this process or others, with the
synchronous clients. Bolt's default threaded `App` polls for `ack()` every 10 ms on a
5-thread pool, so slow work pushes later acks past Slack's 3 s; Bolt's own lazy listeners
keep the work in memory only, where a crash or a deploy loses it.

Extension: `extra_registrars` are `Callable[[AsyncApp, SlackEdge], None]`, called once
after the built-in listeners. Register with `edge.hand_over(job)` as the listener, where
`job(edge, delivery)` is a module-level function (a worker in another process runs it by
its name; see `listeners/decisions.py`). Outbox kinds are drawn by the table in
`bot/slack/renderers.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import CountingWebClient
from bot.settings import Settings
from bot.slack.delivery import SlackDeliverer
from bot.slack.edge import SlackEdge, SlackOptions
from bot.slack.identity import Identity
from bot.slack.listeners import command, decisions, forms, home
from bot.slack.renderers import RENDERERS
from bot.slack.usergroups import UserGroupMembers
from bot.wiring import Core

log = logging.getLogger(__name__)

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
    worker_only: bool = False,
) -> SlackBot:
    """The app, its edge and the deliverer. `worker_only`: for `amlbot work`, which runs
    the jobs and delivers the outbox but never serves Slack, so it needs the bot token
    alone."""
    problems = missing_settings(settings, socket_mode=socket_mode)
    if worker_only:
        problems = [p for p in problems if p.startswith("SLACK_BOT_TOKEN")]
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
    web_client = CountingWebClient(
        token=token,
        base_url=base_url,
        timeout=10,
        count=lambda method, status: core.metrics.slack_api_calls.labels(method, status).inc(),
    )
    identity = Identity(core.service.directory, core.store, core.clock, web_client)
    core.service.directory.usergroup_members = UserGroupMembers(web_client, core.clock)
    edge = SlackEdge(core, web_client, identity, options)
    app = AsyncApp(
        name="amlbot",
        client=async_client,
        authorize=AuthorizeEvenWhenSlackIsDown(async_client, token),
        # Bolt's own signature check is off: every HTTP request reaches Bolt only through
        # `http.py`, which has checked the signature over the raw bytes already (a second
        # check cost each ack about 10 us of the edge's one core), and Bolt never checks
        # Socket Mode requests, which arrive over the websocket the app token opened.
        signing_secret=_secret(settings.slack_signing_secret),
        request_verification_enabled=False,
        process_before_response=True,
    )
    registrars = tuple(extra_registrars)
    for registrar in (*BUILT_IN, *registrars):
        registrar(app, edge)
    deliverer = SlackDeliverer(
        core, web_client, identity, renderers=RENDERERS, dm_notices=options.dm_notices
    )
    return SlackBot(
        app=app,
        edge=edge,
        deliverer=deliverer,
        web_client=web_client,
        signing_secret=SecretStr(_secret(settings.slack_signing_secret)),
    )


class AuthorizeEvenWhenSlackIsDown(AsyncAuthorize):
    """Bolt's authorization for a single-workspace app, minus its failure mode.

    Bolt asks Slack `auth.test` before the first listener runs and, if Slack does not
    answer, drops the request ("installation no longer available") although the person is
    waiting. The request was signed with our secret, so it is ours: it is kept in the inbox
    and acked, and the worker learns the team once Slack answers again.

    A subclass of `AsyncAuthorize`, not a plain function: Bolt calls a function through a
    wrapper that builds its keyword arguments from the whole context on every request.
    """

    def __init__(self, client: AsyncWebClient, token: str) -> None:
        self._client = client
        self._token = token
        self._known: AuthorizeResult | None = None

    async def __call__(self, **_: Any) -> AuthorizeResult:
        if self._known is not None:
            return self._known
        try:
            response = await self._client.auth_test()
        except Exception as exc:
            log.warning("Slack's auth.test failed (%r); accepting requests meanwhile", exc)
            return AuthorizeResult(enterprise_id=None, team_id=None, bot_token=self._token)
        self._known = AuthorizeResult.from_auth_test_response(
            auth_test_response=response, bot_token=self._token
        )
        return self._known


def _secret(value: object) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else ""
