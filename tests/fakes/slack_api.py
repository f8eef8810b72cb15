"""A fake Slack Web API on 127.0.0.1 that records calls and rejects what real Slack rejects.

Point a real `slack_sdk` client at it and assert on what Slack would have shown:

    with FakeSlack(token="xoxb-test", channels={"C0DEMO0001"},
                   users={"U0ALICE01": "alice@example.com"}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        client.chat_postMessage(channel="C0DEMO0001", text="hi")
        assert slack.last_message("C0DEMO0001").text == "hi"

Errors follow Slack's envelope: HTTP 200 with `{"ok": false, "error": "..."}` (plus
`response_metadata.messages` in Slack's `[ERROR] ... [json-pointer:...]` form for block
problems); rate limits are HTTP 429 with `Retry-After`. Messages reject bad blocks with
`invalid_blocks`; views (`views.*`) reject them with `invalid_arguments`, as Slack does.
Block Kit rules are in the first section below; the fake server in the second.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.serving import ServesWhileOpen

JSONDict = dict[str, Any]

RESPONSE_URL_PATH = "/response_url/"
RESPONSE_URL_MAX_USES = 5  # Slack: "up to 5 times within 30 minutes"
MESSAGE_TEXT_LIMIT = 40_000
_TRIGGER_ID = re.compile(r"^\d+\.\d+\.[0-9a-zA-Z]+$")
_JSON_ENCODED_ARGS = ("blocks", "attachments", "view", "metadata")
_METADATA_EVENT_TYPE = re.compile(r"^[a-zA-Z0-9_]+$")

# The bot scopes amlbot's manifest asks for; a fake built with fewer answers
# `missing_scope` where Slack would.
ALL_SCOPES = frozenset(
    {
        "commands",
        "chat:write",
        "users:read",
        "users:read.email",
        "usergroups:read",
        "channels:history",
        "groups:history",
        "im:history",
        "im:write",
    }
)


# ---- Block Kit rules -----------------------------------------------------------------
# Limits from Slack's Block Kit reference. `slack_sdk.models` checks some of them only
# when a model is serialised, and neither the 50-block limit nor duplicate block_ids.

MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100  # modals and Home tabs

_ACTION_ELEMENTS = frozenset(
    {
        "button",
        "channels_select",
        "checkboxes",
        "conversations_select",
        "datepicker",
        "datetimepicker",
        "external_select",
        "multi_channels_select",
        "multi_conversations_select",
        "multi_external_select",
        "multi_static_select",
        "multi_users_select",
        "overflow",
        "radio_buttons",
        "static_select",
        "timepicker",
        "users_select",
        "workflow_button",
    }
)
_INPUT_ELEMENTS = (_ACTION_ELEMENTS - {"button", "overflow", "workflow_button"}) | {
    "email_text_input",
    "file_input",
    "number_input",
    "plain_text_input",
    "rich_text_input",
    "url_text_input",
}
_ACCESSORY_ELEMENTS = _ACTION_ELEMENTS | {"image"}


@dataclass
class BlockErrors:
    """Problems in Slack's `response_metadata.messages` form."""

    messages: list[str] = field(default_factory=list)

    def add(self, problem: str, pointer: str) -> None:
        self.messages.append(f"[ERROR] {problem} [json-pointer:{pointer}]")

    def __bool__(self) -> bool:
        return bool(self.messages)


def validate_blocks(blocks: list[Any], *, limit: int, pointer: str) -> BlockErrors:
    errors = BlockErrors()
    if len(blocks) > limit:
        errors.add(f"no more than {limit} items allowed", pointer)
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"{pointer}/{index}"
        if not isinstance(block, dict):
            errors.add("must be an object", where)
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not 0 < len(block_id) <= 255:
                errors.add("must be between 1 and 255 characters", f"{where}/block_id")
            elif block_id in block_ids:
                errors.add(f"duplicate block_id '{block_id}'", f"{where}/block_id")
            else:
                block_ids.add(block_id)
        check = _BLOCK_CHECKS.get(str(block.get("type")))
        if check is None:
            errors.add(f"failed to match all allowed schemas (type {block.get('type')!r})", where)
        else:
            check(block, where, errors)
    return errors


def validate_view(view: JSONDict, *, allowed_types: set[str]) -> BlockErrors:
    errors = BlockErrors()
    view_type = view.get("type")
    if view_type not in ("modal", "home") or view_type not in allowed_types:
        errors.add(f"must be a valid enum value ({sorted(allowed_types)})", "/view/type")
        return errors
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        errors.add("missing required field: blocks", "/view/blocks")
        return errors
    if view_type == "modal":
        _check_text(view.get("title"), "/view/title", errors, limit=24, plain_only=True)
        for button in ("submit", "close"):
            if view.get(button) is not None:
                _check_text(view[button], f"/view/{button}", errors, limit=24, plain_only=True)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and view.get("submit") is None:
            errors.add("must provide submit when the view has an input block", "/view/submit")
    for name, limit in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        value = view.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors.add(f"must be a string of at most {limit} characters", f"/view/{name}")
    block_errors = validate_blocks(blocks, limit=VIEW_BLOCK_LIMIT, pointer="/view/blocks")
    errors.messages += block_errors.messages
    return errors


def _check_text(
    obj: Any, where: str, errors: BlockErrors, *, limit: int, plain_only: bool = False
) -> None:
    if not isinstance(obj, dict):
        errors.add("must be a text object", where)
        return
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in allowed:
        errors.add(f"must be a valid enum value {allowed}", f"{where}/type")
    text = obj.get("text")
    if not isinstance(text, str):
        errors.add("missing required field: text", where)
    elif not text:
        errors.add("must be more than 0 characters", f"{where}/text")
    elif len(text) > limit:
        errors.add(f"must be less than {limit + 1} characters", f"{where}/text")


def _check_string(value: Any, where: str, errors: BlockErrors, *, limit: int) -> None:
    if not isinstance(value, str) or not value:
        errors.add("missing required field", where)
    elif len(value) > limit:
        errors.add(f"must be less than {limit + 1} characters", where)


def _check_elements(
    elements: Any, where: str, errors: BlockErrors, *, most: int
) -> list[tuple[str, JSONDict]]:
    if not isinstance(elements, list) or not elements:
        errors.add("must provide at least 1 item", where)
        return []
    if len(elements) > most:
        errors.add(f"no more than {most} items allowed", where)
    valid: list[tuple[str, JSONDict]] = []
    for index, element in enumerate(elements):
        if isinstance(element, dict):
            valid.append((f"{where}/{index}", element))
        else:
            errors.add("must be an object", f"{where}/{index}")
    return valid


def _check_element(
    element: Any,
    where: str,
    errors: BlockErrors,
    *,
    allowed: frozenset[str],
    action_ids: set[str],
) -> None:
    if not isinstance(element, dict) or element.get("type") not in allowed:
        kind = element.get("type") if isinstance(element, dict) else element
        errors.add(f"failed to match all allowed schemas (element {kind!r})", where)
        return
    action_id = element.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or not 0 < len(action_id) <= 255:
            errors.add("must be between 1 and 255 characters", f"{where}/action_id")
        elif action_id in action_ids:
            errors.add(f"duplicate action_id '{action_id}' in block", f"{where}/action_id")
        else:
            action_ids.add(action_id)
    kind = element["type"]
    if kind == "button":
        _check_text(element.get("text"), f"{where}/text", errors, limit=75, plain_only=True)
        for name, limit in (("value", 2000), ("url", 3000)):
            if element.get(name) is not None:
                _check_string(element[name], f"{where}/{name}", errors, limit=limit)
        if element.get("style") not in (None, "primary", "danger"):
            errors.add("must be a valid enum value", f"{where}/style")
    elif kind == "image":
        _check_image(element, where, errors)
    if "placeholder" in element:
        _check_text(element["placeholder"], f"{where}/placeholder", errors, limit=150)
    if "confirm" in element:
        _check_confirm(element["confirm"], f"{where}/confirm", errors)
    most_options = {"overflow": 5, "checkboxes": 10, "radio_buttons": 10}.get(kind, 100)
    for group in ("options", "option_groups"):
        if group in element:
            _check_options(element[group], f"{where}/{group}", errors, most=most_options)


def _check_options(options: Any, where: str, errors: BlockErrors, *, most: int) -> None:
    for option_where, option in _check_elements(options, where, errors, most=most):
        if "options" in option:  # an option group
            _check_text(option.get("label"), f"{option_where}/label", errors, limit=75)
            _check_options(option["options"], f"{option_where}/options", errors, most=100)
            continue
        _check_text(option.get("text"), f"{option_where}/text", errors, limit=75)
        _check_string(option.get("value"), f"{option_where}/value", errors, limit=150)


def _check_confirm(confirm: Any, where: str, errors: BlockErrors) -> None:
    if not isinstance(confirm, dict):
        errors.add("must be an object", where)
        return
    _check_text(confirm.get("title"), f"{where}/title", errors, limit=100, plain_only=True)
    _check_text(confirm.get("text"), f"{where}/text", errors, limit=300)
    _check_text(confirm.get("confirm"), f"{where}/confirm", errors, limit=30, plain_only=True)
    _check_text(confirm.get("deny"), f"{where}/deny", errors, limit=30, plain_only=True)


def _check_image(image: JSONDict, where: str, errors: BlockErrors) -> None:
    if not image.get("image_url") and not image.get("slack_file"):
        errors.add("missing required field: image_url", where)
    _check_string(image.get("alt_text"), f"{where}/alt_text", errors, limit=2000)


def _section(block: JSONDict, where: str, errors: BlockErrors) -> None:
    if block.get("text") is None and not block.get("fields"):
        errors.add("must provide either text or fields", where)
    if block.get("text") is not None:
        _check_text(block["text"], f"{where}/text", errors, limit=3000)
    if block.get("fields") is not None:
        fields = _check_elements(block["fields"], f"{where}/fields", errors, most=10)
        for field_where, item in fields:
            _check_text(item, field_where, errors, limit=2000)
    if block.get("accessory") is not None:
        _check_element(
            block["accessory"],
            f"{where}/accessory",
            errors,
            allowed=_ACCESSORY_ELEMENTS,
            action_ids=set(),
        )


def _header(block: JSONDict, where: str, errors: BlockErrors) -> None:
    _check_text(block.get("text"), f"{where}/text", errors, limit=150, plain_only=True)


def _actions(block: JSONDict, where: str, errors: BlockErrors) -> None:
    action_ids: set[str] = set()
    for element_where, element in _check_elements(
        block.get("elements"), f"{where}/elements", errors, most=25
    ):
        _check_element(
            element, element_where, errors, allowed=_ACTION_ELEMENTS, action_ids=action_ids
        )


def _context(block: JSONDict, where: str, errors: BlockErrors) -> None:
    for element_where, element in _check_elements(
        block.get("elements"), f"{where}/elements", errors, most=10
    ):
        if element.get("type") == "image":
            _check_image(element, element_where, errors)
        else:
            _check_text(element, element_where, errors, limit=3000)


def _input(block: JSONDict, where: str, errors: BlockErrors) -> None:
    _check_text(block.get("label"), f"{where}/label", errors, limit=2000, plain_only=True)
    if block.get("hint") is not None:
        _check_text(block["hint"], f"{where}/hint", errors, limit=2000, plain_only=True)
    _check_element(
        block.get("element"), f"{where}/element", errors, allowed=_INPUT_ELEMENTS, action_ids=set()
    )


def _image(block: JSONDict, where: str, errors: BlockErrors) -> None:
    _check_image(block, where, errors)
    if block.get("title") is not None:
        _check_text(block["title"], f"{where}/title", errors, limit=2000, plain_only=True)


def _markdown(block: JSONDict, where: str, errors: BlockErrors) -> None:
    _check_string(block.get("text"), f"{where}/text", errors, limit=12_000)


def _rich_text(block: JSONDict, where: str, errors: BlockErrors) -> None:
    if not isinstance(block.get("elements"), list):
        errors.add("missing required field: elements", f"{where}/elements")


def _no_rules(block: JSONDict, where: str, errors: BlockErrors) -> None:
    """Block types the bot does not use; accepted as they are."""


_BLOCK_CHECKS: dict[str, Callable[[JSONDict, str, BlockErrors], None]] = {
    "actions": _actions,
    "context": _context,
    "divider": _no_rules,
    "file": _no_rules,
    "header": _header,
    "image": _image,
    "input": _input,
    "markdown": _markdown,
    "rich_text": _rich_text,
    "section": _section,
    "video": _no_rules,
}


# ---- records of what the fake saw ------------------------------------------------------


class SlackApiFailure(Exception):
    """Raised inside a method handler; becomes Slack's `{"ok": false, "error": ...}`."""

    def __init__(
        self,
        error: str,
        *,
        messages: Iterable[str] = (),
        status: int = 200,
        extra: JSONDict | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)
        self.status = status
        self.extra = dict(extra or {})


@dataclass(frozen=True)
class RecordedCall:
    """One HTTP request the fake received, whatever its outcome."""

    method: str  # "chat.postMessage", ... or "response_url"
    params: JSONDict  # query + form + JSON body merged; JSON-encoded args (blocks, view) decoded
    headers: dict[str, str]  # lower-cased names
    body_format: str  # "json", "form" or "none"
    status: int
    response: JSONDict | str
    path: str

    @property
    def ok(self) -> bool:
        return isinstance(self.response, dict) and self.response.get("ok") is True

    @property
    def error(self) -> str | None:
        if isinstance(self.response, dict):
            error = self.response.get("error")
            return error if isinstance(error, str) else None
        return None if self.status == 200 else self.response


@dataclass(frozen=True)
class Message:
    """A message as the channel shows it now (after any `chat.update`)."""

    channel: str
    ts: str
    text: str
    blocks: list[JSONDict]
    thread_ts: str | None = None
    edits: int = 0
    deleted: bool = False
    via: str = "chat.postMessage"  # or "response_url"
    metadata: JSONDict | None = None  # message metadata: {"event_type", "event_payload"}

    @property
    def all_text(self) -> str:
        """The fallback text and every text inside the blocks, one per line."""
        return "\n".join([self.text, *iter_blocks_text(self.blocks)])


@dataclass(frozen=True)
class Ephemeral:
    """A message only `user` sees (`chat.postEphemeral` or an ephemeral `response_url` post)."""

    channel: str
    user: str
    text: str
    blocks: list[JSONDict]
    thread_ts: str | None = None
    via: str = "chat.postEphemeral"

    @property
    def all_text(self) -> str:
        return "\n".join([self.text, *iter_blocks_text(self.blocks)])


@dataclass(frozen=True)
class ResponseUrlPost:
    """One accepted POST to a minted `response_url`."""

    url: str
    channel: str
    user: str
    text: str
    blocks: list[JSONDict]
    response_type: str  # "ephemeral" (Slack's default) or "in_channel"
    replace_original: bool
    delete_original: bool
    thread_ts: str | None


@dataclass(frozen=True)
class View:
    """A modal or Home tab as Slack holds it now."""

    id: str
    type: str
    view: JSONDict  # what the app sent
    hash: str
    opened_by: str  # "views.open", "views.push", "views.publish"
    user: str | None = None  # known for Home tabs (views.publish)
    updates: int = 0


@dataclass(frozen=True)
class _FailNext:
    status: int
    error: str
    retry_after: int | None
    remaining: int


@dataclass(frozen=True)
class _LoseAnswer:
    """The call takes effect in Slack, but its answer is delayed and/or replaced."""

    delay: float
    status: int | None  # None: the real answer, late
    remaining: int


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    message_ts: str | None
    uses: int = 0


@dataclass
class _State:
    messages: dict[str, list[Message]] = field(default_factory=dict)
    ephemerals: list[Ephemeral] = field(default_factory=list)
    response_posts: list[ResponseUrlPost] = field(default_factory=list)
    response_urls: dict[str, _ResponseUrl] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    home_views: dict[str, str] = field(default_factory=dict)  # user -> view id
    dm_channels: dict[str, str] = field(default_factory=dict)  # user -> D... id
    used_triggers: set[str] = field(default_factory=set)
    calls: list[RecordedCall] = field(default_factory=list)
    fail_next: dict[str, list[_FailNext]] = field(default_factory=dict)
    lose_answers: dict[str, list[_LoseAnswer]] = field(default_factory=dict)
    failing_channels: dict[str, str] = field(default_factory=dict)
    failing_texts: dict[str, int] = field(default_factory=dict)  # text -> HTTP status
    outage: _FailNext | None = None
    last_ts_micros: int = 0


class FakeSlack(ServesWhileOpen):
    """A local Slack Web API; use as a context manager (or `start()`/`stop()`).

    `channels` are the public channel ids the bot may post to; `users` maps user id to
    e-mail. A DM channel `D<user id without its first letter>` exists once
    `conversations.open` is called for that user (or a message is posted to the user id).
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        channels: Iterable[str] = (),
        users: Mapping[str, str] | None = None,
        team_id: str = "T0AMLTEST",
        team_domain: str = "amlbot-test",
        bot_user_id: str = "U0AMLBOT0",
        bot_id: str = "B0AMLBOT0",
        app_id: str = "A0AMLBOT0",
        usergroups: Mapping[str, list[str]] | None = None,
        scopes: Iterable[str] = ALL_SCOPES,
    ) -> None:
        self.token = token
        self.scopes = frozenset(scopes)
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._channels = set(channels)
        self._users = dict(users or {})
        self._usergroups = {key: list(value) for key, value in (usergroups or {}).items()}
        self._lock = threading.RLock()
        self._state = _State()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[JSONDict], JSONDict]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }
        # Methods that take another token than the bot's (an app-level `xapp-` token).
        self._method_tokens: dict[str, str] = {}

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeSlack:
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        """Root of the server, e.g. `http://127.0.0.1:54321`."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started; use `with FakeSlack(...) as slack:`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """What `WebClient(base_url=...)` and `SLACK_API_URL` expect (ends with `/api/`)."""
        return f"{self.url}/api/"

    # ---- arranging -------------------------------------------------------------------

    def add_channel(self, channel: str) -> None:
        with self._lock:
            self._channels.add(channel)

    def add_user(self, user_id: str, email: str) -> None:
        with self._lock:
            self._users[user_id] = email

    def add_method(
        self, method: str, handler: Callable[[JSONDict], JSONDict], *, token: str | None = None
    ) -> None:
        """Serve one more Web API method, e.g. `apps.connections.open` from
        `tests/fakes/slack_socket_mode.py`. `handler` gets the merged params and returns the
        answer without `ok`; it raises `SlackApiFailure` for an error. With `token`, calls
        must carry that token instead of the bot token (an app-level `xapp-` one)."""
        with self._lock:
            self._methods[method] = handler
            if token is not None:
                self._method_tokens[method] = token

    def hold_answers(self, method: str) -> tuple[threading.Event, threading.Event]:
        """Make `method` slow: each call sets the first event, then waits (up to 10 s) for
        the second before it takes effect and answers. Returns (asked, answer)."""
        asked, answer = threading.Event(), threading.Event()
        as_usual = self._methods[method]

        def held(params: JSONDict) -> JSONDict:
            asked.set()
            answer.wait(10)
            return as_usual(params)

        self.add_method(method, held)
        return asked, answer

    def dm_channel_id(self, user_id: str) -> str:
        """The id `conversations.open` returns for `user_id` (deterministic)."""
        return f"D{user_id[1:]}"

    def response_url(self, channel: str, user: str, *, message_ts: str | None = None) -> str:
        """Mint a `response_url` as Slack puts in a slash command or interaction payload.

        `message_ts` is the message an interaction came from; `replace_original` and
        `delete_original` act on it.
        """
        with self._lock:
            url_id = f"T{next(self._ids):06d}"
            self._state.response_urls[url_id] = _ResponseUrl(channel, user, message_ts)
        return f"{self.url}{RESPONSE_URL_PATH}{url_id}"

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        error: str | None = None,
    ) -> None:
        """Make the next `times` calls of `method` fail before anything else is checked.

        429 answers `{"ok": false, "error": "ratelimited"}` with `Retry-After: retry_after`;
        500/503 answer `internal_error`/`service_unavailable` bodies; status 200 with an
        `error` answers that Slack error (e.g. `fatal_error`). `method` may be
        `"response_url"`.
        """
        default_errors = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
        chosen = error or default_errors.get(status)
        if chosen is None:
            raise ValueError(f"give an error name for status {status}")
        with self._lock:
            self._state.fail_next.setdefault(method, []).append(
                _FailNext(status, chosen, retry_after if status == 429 else None, times)
            )

    def fail_every_call(
        self, *, status: int = 429, retry_after: int | None = 1, error: str | None = None
    ) -> None:
        """An outage: every later call fails like `fail_next` describes, whatever its method,
        until `clear_failures()` (or another `fail_every_call`) ends or changes it."""
        default_errors = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
        chosen = error or default_errors.get(status)
        if chosen is None:
            raise ValueError(f"give an error name for status {status}")
        with self._lock:
            self._state.outage = _FailNext(
                status, chosen, retry_after if status == 429 else None, remaining=0
            )

    def fail_permanently(self, channel: str, error: str = "channel_not_found") -> None:
        """Every later call naming `channel` fails with `error` (e.g. `is_archived`)."""
        with self._lock:
            self._state.failing_channels[channel] = error

    def fail_messages_containing(self, text: str, *, status: int = 500) -> None:
        """Every later `chat.postMessage` whose text holds `text` answers `status`
        (`internal_error`), while every other call works: a message Slack fails on, not an
        outage."""
        with self._lock:
            self._state.failing_texts[text] = status

    def lose_answer(
        self, method: str, *, delay: float = 0.0, status: int | None = 500, times: int = 1
    ) -> None:
        """The next `times` calls of `method` take effect (the message is posted), but the
        caller hears of it only after `delay` seconds, and then `status` (500 answers
        `internal_error`; None the real answer): what a timeout, a proxy's 5xx or a process
        killed while waiting for Slack leaves the caller not knowing."""
        with self._lock:
            self._state.lose_answers.setdefault(method, []).append(
                _LoseAnswer(delay, status, times)
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._state.lose_answers.clear()
            self._state.fail_next.clear()
            self._state.failing_channels.clear()
            self._state.failing_texts.clear()
            self._state.outage = None

    # ---- inspecting ------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Every request received (failed ones too), oldest first; optionally one method."""
        with self._lock:
            return [c for c in self._state.calls if method is None or c.method == method]

    def messages_in(self, channel: str, *, include_deleted: bool = False) -> list[Message]:
        """Messages in `channel` (thread replies included) in posting order, as shown now."""
        with self._lock:
            shown_as = self.dm_channel_id(channel) if channel in self._users else channel
            return [
                m
                for m in self._state.messages.get(shown_as, [])
                if include_deleted or not m.deleted
            ]

    def all_messages(self) -> list[Message]:
        """Every visible message in every channel and DM."""
        with self._lock:
            return [m for ms in self._state.messages.values() for m in ms if not m.deleted]

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.messages_in(channel) if m.thread_ts == thread_ts]

    def message(self, channel: str, ts: str) -> Message:
        for candidate in self.messages_in(channel, include_deleted=True):
            if candidate.ts == ts:
                return candidate
        raise LookupError(f"no message {ts} in {channel}")

    def last_message(self, channel: str | None = None) -> Message:
        """The newest visible message in `channel` (or anywhere); `LookupError` if none."""
        with self._lock:
            if channel is None:
                candidates = [
                    m for ms in self._state.messages.values() for m in ms if not m.deleted
                ]
            else:
                candidates = self.messages_in(channel)
        if not candidates:
            where = channel or "any channel"
            raise LookupError(f"no message in {where}; calls: {self._call_summary()}")
        return max(candidates, key=lambda m: _ts_key(m.ts))

    def ephemerals(self, *, user: str | None = None, channel: str | None = None) -> list[Ephemeral]:
        with self._lock:
            return [
                e
                for e in self._state.ephemerals
                if (user is None or e.user == user) and (channel is None or e.channel == channel)
            ]

    def response_posts(self, url: str | None = None) -> list[ResponseUrlPost]:
        with self._lock:
            return [p for p in self._state.response_posts if url is None or p.url == url]

    def views(self) -> list[View]:
        """Every modal and Home tab opened or published, in order."""
        with self._lock:
            return list(self._state.views.values())

    def view(self, view_id: str) -> View:
        with self._lock:
            return self._state.views[view_id]

    def home_view(self, user_id: str) -> View | None:
        with self._lock:
            view_id = self._state.home_views.get(user_id)
            return None if view_id is None else self._state.views[view_id]

    def _call_summary(self) -> str:
        return ", ".join(f"{c.method}->{c.error or 'ok'}" for c in self._state.calls) or "none"

    # ---- request dispatch (called from the server threads) ----------------------------

    def handle(
        self, path: str, query: str, headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], JSONDict | str]:
        lower_headers = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            if path.startswith(RESPONSE_URL_PATH):
                return self._handle_response_url(path, lower_headers, raw_body)
            if not path.startswith("/api/"):
                return 404, {}, {"ok": False, "error": "unknown_method"}
            method = path.removeprefix("/api/")
            params, body_format, parse_error = _parse_params(query, lower_headers, raw_body)
            status, extra_headers, response = self._dispatch(
                method, params, body_format, lower_headers, parse_error
            )
            lost = self._take_lost_answer(method) if status == 200 else None
            if lost is not None and lost.status is not None:
                status, extra_headers = lost.status, {}
                response = {"ok": False, "error": "internal_error"}
            self._state.calls.append(
                RecordedCall(method, params, lower_headers, body_format, status, response, path)
            )
        if lost is not None and lost.delay:
            time.sleep(lost.delay)  # outside the lock: the rest of Slack keeps answering
        return status, extra_headers, response

    def _take_lost_answer(self, method: str) -> _LoseAnswer | None:
        queue = self._state.lose_answers.get(method)
        if not queue:
            return None
        lost = queue[0]
        if lost.remaining <= 1:
            queue.pop(0)
        else:
            queue[0] = replace(lost, remaining=lost.remaining - 1)
        return lost

    def _dispatch(
        self,
        method: str,
        params: JSONDict,
        body_format: str,
        headers: Mapping[str, str],
        parse_error: str | None,
    ) -> tuple[int, dict[str, str], JSONDict | str]:
        injected = self._take_injected_failure(method)
        if injected is not None:
            return injected
        handler = self._methods.get(method)
        if handler is None:
            return 404, {}, {"ok": False, "error": "unknown_method", "req_method": method}
        if method != "api.test":
            expected = self._method_tokens.get(method, self.token)
            auth_error = self._auth_error(params, headers, body_format, expected)
            if auth_error is not None:
                return 200, {}, {"ok": False, "error": auth_error}
        try:
            if parse_error is not None:
                raise SlackApiFailure(parse_error)
            channel = params.get("channel")
            if isinstance(channel, str) and channel in self._state.failing_channels:
                raise SlackApiFailure(self._state.failing_channels[channel])
            text = params.get("text")
            if method == "chat.postMessage" and isinstance(text, str):
                for failing, status in self._state.failing_texts.items():
                    if failing in text:
                        raise SlackApiFailure("internal_error", status=status)
            self._check_scope(method, params)
            return 200, self._scope_headers(), {"ok": True, **handler(params)}
        except SlackApiFailure as failure:
            body: JSONDict = {"ok": False, "error": failure.error, **failure.extra}
            if failure.messages:
                body["response_metadata"] = {"messages": failure.messages}
            return failure.status, self._scope_headers(), body

    def _scope_headers(self) -> dict[str, str]:
        # Slack names the token's scopes on every answer; `check-config` reads them.
        return {"X-OAuth-Scopes": ",".join(sorted(self.scopes))}

    def _check_scope(self, method: str, params: JSONDict) -> None:
        needed = _scope_needed(method, params, self._resolve_channel)
        if needed is not None and needed not in self.scopes:
            raise SlackApiFailure(
                "missing_scope",
                extra={"needed": needed, "provided": ",".join(sorted(self.scopes))},
            )

    def _take_injected_failure(self, method: str) -> tuple[int, dict[str, str], JSONDict] | None:
        queue = self._state.fail_next.get(method)
        if self._state.outage is not None:
            failure = self._state.outage
        elif not queue:
            return None
        else:
            failure = queue[0]
            if failure.remaining <= 1:
                queue.pop(0)
            else:
                queue[0] = replace(failure, remaining=failure.remaining - 1)
        extra = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
        return failure.status, extra, {"ok": False, "error": failure.error}

    def _auth_error(
        self, params: JSONDict, headers: Mapping[str, str], body_format: str, expected: str
    ) -> str | None:
        authorization = headers.get("authorization", "")
        token: str | None = None
        if authorization.lower().startswith("bearer "):
            token = authorization[len("bearer ") :].strip()
        elif body_format != "json":  # Slack ignores a token inside a JSON body
            candidate = params.get("token")
            token = candidate if isinstance(candidate, str) else None
        if not token:
            return "not_authed"
        if token == expected:
            return None
        if expected.startswith("xapp-") and not token.startswith("xapp-"):
            return "not_allowed_token_type"  # e.g. the bot token where an app token belongs
        return "invalid_auth"

    # ---- helpers shared by methods ----------------------------------------------------

    def _next_ts(self) -> str:
        micros = max(self._state.last_ts_micros + 1, time.time_ns() // 1000)
        self._state.last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_channel(self, channel: str) -> str:
        if channel in self._users:  # Slack posts to the app's DM with that user
            return self._open_dm(channel)
        return channel

    def _open_dm(self, user: str) -> str:
        dm = self.dm_channel_id(user)
        self._state.dm_channels[user] = dm
        return dm

    def _known_channel(self, params: JSONDict) -> str:
        channel = params.get("channel")
        if not isinstance(channel, str) or not channel:
            raise SlackApiFailure("channel_not_found")
        resolved = self._resolve_channel(channel)
        if resolved not in self._channels and resolved not in self._state.dm_channels.values():
            raise SlackApiFailure("channel_not_found")
        return resolved

    def _message_content(self, params: JSONDict, *, required: bool = True) -> tuple[str, list[Any]]:
        text = params.get("text")
        text = text if isinstance(text, str) else ""
        blocks = params.get("blocks")
        if blocks is None:
            blocks = []
        if not isinstance(blocks, list):
            raise SlackApiFailure("invalid_blocks_format")
        if required and not text.strip() and not blocks and not params.get("attachments"):
            raise SlackApiFailure("no_text")
        if len(text) > MESSAGE_TEXT_LIMIT:
            raise SlackApiFailure("msg_too_long")
        problems = validate_blocks(blocks, limit=MESSAGE_BLOCK_LIMIT, pointer="/blocks")
        if problems:
            raise SlackApiFailure("invalid_blocks", messages=problems.messages)
        return text, blocks

    def _find_message(self, channel: str, ts: Any) -> int:
        for index, message in enumerate(self._state.messages.get(channel, [])):
            if message.ts == ts and not message.deleted:
                return index
        raise SlackApiFailure("message_not_found")

    def _bot_message(self, message: Message) -> JSONDict:
        body: JSONDict = {
            "type": "message",
            "subtype": "bot_message",
            "text": message.text,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": message.ts,
            "blocks": message.blocks,
        }
        if message.thread_ts is not None:
            body["thread_ts"] = message.thread_ts
        if message.metadata is not None:
            body["metadata"] = message.metadata
        return body

    def _listed(self, message: Message, params: JSONDict) -> JSONDict:
        body = self._bot_message(message)
        # Slack returns metadata in history and replies only when asked for it.
        if not _truthy(params.get("include_all_metadata")):
            body.pop("metadata", None)
        return body

    def _page(self, messages: list[Message], params: JSONDict) -> JSONDict:
        oldest = _ts_key(str(params.get("oldest") or "0"))
        latest_raw = params.get("latest")
        latest = _ts_key(str(latest_raw)) if latest_raw else None
        inside = [
            m
            for m in messages
            if _ts_key(m.ts) > oldest and (latest is None or _ts_key(m.ts) < latest)
        ]
        limit = max(1, min(int(params.get("limit") or 100), 999))
        start = int(params.get("cursor") or 0)
        page = inside[start : start + limit]
        more = start + limit < len(inside)
        return {
            "messages": [self._listed(m, params) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _user_object(self, user_id: str) -> JSONDict:
        email = self._users[user_id]
        name = email.split("@", 1)[0]
        return {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "is_bot": False,
            "tz": "Europe/Amsterdam",
            "profile": {
                "email": email,
                "real_name": name.title(),
                "display_name": name,
                "team": self.team_id,
            },
        }

    # ---- Web API methods ---------------------------------------------------------------

    def _api_test(self, params: JSONDict) -> JSONDict:
        return {"args": {k: v for k, v in params.items() if k != "token"}}

    def _auth_test(self, params: JSONDict) -> JSONDict:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": "amlbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: JSONDict) -> JSONDict:
        channel = self._known_channel(params)
        text, blocks = self._message_content(params)
        thread_ts = params.get("thread_ts") or None
        metadata = _checked_metadata(params.get("metadata"))
        message = Message(
            channel, self._next_ts(), text, blocks, thread_ts=thread_ts, metadata=metadata
        )
        self._state.messages.setdefault(channel, []).append(message)
        return {"channel": channel, "ts": message.ts, "message": self._bot_message(message)}

    def _chat_post_ephemeral(self, params: JSONDict) -> JSONDict:
        channel = self._known_channel(params)
        user = params.get("user")
        if not isinstance(user, str) or user not in self._users:
            raise SlackApiFailure("user_not_in_channel")
        text, blocks = self._message_content(params)
        thread_ts = params.get("thread_ts") or None
        self._state.ephemerals.append(Ephemeral(channel, user, text, blocks, thread_ts))
        return {"message_ts": self._next_ts()}

    def _chat_update(self, params: JSONDict) -> JSONDict:
        channel = self._known_channel(params)
        index = self._find_message(channel, params.get("ts"))
        text, blocks = self._message_content(params)
        current = self._state.messages[channel][index]
        updated = replace(current, text=text, blocks=blocks, edits=current.edits + 1)
        self._state.messages[channel][index] = updated
        return {
            "channel": channel,
            "ts": updated.ts,
            "text": text,
            "message": self._bot_message(updated),
        }

    def _chat_delete(self, params: JSONDict) -> JSONDict:
        channel = self._known_channel(params)
        index = self._find_message(channel, params.get("ts"))
        current = self._state.messages[channel][index]
        self._state.messages[channel][index] = replace(current, deleted=True)
        return {"channel": channel, "ts": current.ts}

    def _chat_get_permalink(self, params: JSONDict) -> JSONDict:
        channel = self._known_channel(params)
        ts = params.get("message_ts")
        self._find_message(channel, ts)
        archive = f"https://{self.team_domain}.slack.com/archives/{channel}"
        return {"channel": channel, "permalink": f"{archive}/p{str(ts).replace('.', '')}"}

    def _conversations_open(self, params: JSONDict) -> JSONDict:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if not users:
            raise SlackApiFailure("users_list_not_supplied")
        unknown = [u for u in users if u not in self._users]
        if unknown:
            raise SlackApiFailure("user_not_found")
        if len(users) > 1:
            raise SlackApiFailure("not_supported_by_fake")  # group DMs are not modelled
        already_open = users[0] in self._state.dm_channels
        return {
            "no_op": already_open,
            "already_open": already_open,
            "channel": {"id": self._open_dm(users[0])},
        }

    def _conversations_history(self, params: JSONDict) -> JSONDict:
        """Top-level messages (thread replies stay in their thread), newest first."""
        channel = self._known_channel(params)
        if not str(channel).startswith(("C", "G", "D")):
            raise SlackApiFailure("channel_not_found")  # a user id is not a conversation
        shown = [
            m
            for m in self._state.messages.get(channel, [])
            if not m.deleted and (m.thread_ts is None or m.thread_ts == m.ts)
        ]
        return self._page(sorted(shown, key=lambda m: _ts_key(m.ts), reverse=True), params)

    def _conversations_replies(self, params: JSONDict) -> JSONDict:
        """A thread: its parent first, then the replies, oldest first."""
        channel = self._known_channel(params)
        parent_ts = params.get("ts")
        messages = [m for m in self._state.messages.get(channel, []) if not m.deleted]
        parent = next((m for m in messages if m.ts == parent_ts), None)
        if parent is None:
            raise SlackApiFailure("thread_not_found")
        replies = sorted(
            (m for m in messages if m.thread_ts == parent_ts and m.ts != parent_ts),
            key=lambda m: _ts_key(m.ts),
        )
        answer = self._page(replies, params)
        answer["messages"].insert(0, self._listed(parent, params))
        return answer

    def _users_lookup_by_email(self, params: JSONDict) -> JSONDict:
        email = str(params.get("email") or "").lower()
        for user_id, known in self._users.items():
            if known.lower() == email:
                return {"user": self._user_object(user_id)}
        raise SlackApiFailure("users_not_found")

    def set_usergroup(self, usergroup: str, users: list[str]) -> None:
        with self._lock:
            self._usergroups[usergroup] = list(users)

    def _usergroups_users_list(self, params: JSONDict) -> JSONDict:
        # https://api.slack.com/methods/usergroups.users.list: {"ok": true, "users": [...]};
        # an unknown id is `no_such_subteam`.
        usergroup = params.get("usergroup")
        if not isinstance(usergroup, str) or not usergroup:
            raise SlackApiFailure(
                "invalid_arguments", messages=["[ERROR] missing required field: usergroup"]
            )
        if usergroup not in self._usergroups:
            raise SlackApiFailure("no_such_subteam")
        return {"users": list(self._usergroups[usergroup])}

    def _users_info(self, params: JSONDict) -> JSONDict:
        user_id = params.get("user")
        if not isinstance(user_id, str) or user_id not in self._users:
            raise SlackApiFailure("user_not_found")
        return {"user": self._user_object(user_id)}

    def _exchange_trigger(self, params: JSONDict) -> None:
        trigger = params.get("trigger_id") or params.get("interactivity_pointer")
        if not isinstance(trigger, str) or not trigger:
            raise SlackApiFailure(
                "invalid_arguments", messages=["[ERROR] missing required field: trigger_id"]
            )
        if not _TRIGGER_ID.match(trigger):
            raise SlackApiFailure("invalid_trigger_id")
        if trigger in self._state.used_triggers:
            raise SlackApiFailure("exchanged_trigger_id")
        self._state.used_triggers.add(trigger)

    def _checked_view(self, params: JSONDict, allowed_types: set[str]) -> JSONDict:
        view = params.get("view")
        if not isinstance(view, dict):
            raise SlackApiFailure(
                "invalid_arguments", messages=["[ERROR] missing required field: view"]
            )
        problems: BlockErrors = validate_view(view, allowed_types=allowed_types)
        if problems:
            raise SlackApiFailure("invalid_arguments", messages=problems.messages)
        return view

    def _store_view(self, view: JSONDict, opened_by: str, user: str | None) -> View:
        stored = View(
            id=f"V{next(self._ids):08d}",
            type=str(view["type"]),
            view=view,
            hash=f"{time.time():.6f}.{next(self._ids):08x}",
            opened_by=opened_by,
            user=user,
        )
        self._state.views[stored.id] = stored
        return stored

    def _view_response(self, stored: View) -> JSONDict:
        view = {
            "state": {"values": {}},
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            **stored.view,
            "id": stored.id,
            "team_id": self.team_id,
            "hash": stored.hash,
            "root_view_id": stored.id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        return {"view": view}

    def _views_open(self, params: JSONDict) -> JSONDict:
        self._exchange_trigger(params)
        view = self._checked_view(params, {"modal"})
        return self._view_response(self._store_view(view, "views.open", None))

    def _views_push(self, params: JSONDict) -> JSONDict:
        self._exchange_trigger(params)
        view = self._checked_view(params, {"modal"})
        return self._view_response(self._store_view(view, "views.push", None))

    def _views_update(self, params: JSONDict) -> JSONDict:
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        if not view_id and not external_id:
            raise SlackApiFailure(
                "invalid_arguments", messages=["[ERROR] missing required field: view_id"]
            )
        current = next(
            (
                v
                for v in self._state.views.values()
                if v.id == view_id or (external_id and v.view.get("external_id") == external_id)
            ),
            None,
        )
        if current is None:
            raise SlackApiFailure("not_found")
        if params.get("hash") and params["hash"] != current.hash:
            raise SlackApiFailure("hash_conflict")
        view = self._checked_view(params, {current.type})
        updated = replace(
            current,
            view=view,
            hash=f"{time.time():.6f}.{next(self._ids):08x}",
            updates=current.updates + 1,
        )
        self._state.views[updated.id] = updated
        return self._view_response(updated)

    def _views_publish(self, params: JSONDict) -> JSONDict:
        user = params.get("user_id")
        if not isinstance(user, str) or user not in self._users:
            raise SlackApiFailure("user_not_found")
        view = self._checked_view(params, {"home"})
        previous_id = self._state.home_views.get(user)
        if previous_id is not None:
            previous = self._state.views[previous_id]
            if params.get("hash") and params["hash"] != previous.hash:
                raise SlackApiFailure("hash_conflict")
            stored = replace(
                previous,
                view=view,
                hash=f"{time.time():.6f}.{next(self._ids):08x}",
                updates=previous.updates + 1,
            )
            self._state.views[stored.id] = stored
        else:
            stored = self._store_view(view, "views.publish", user)
            self._state.home_views[user] = stored.id
        return self._view_response(stored)

    # ---- response_url ----------------------------------------------------------------

    def _handle_response_url(
        self, path: str, headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], JSONDict | str]:
        params, body_format, parse_error = _parse_params("", headers, raw_body)
        body: JSONDict | str
        extra: dict[str, str] = {}
        injected = self._take_injected_failure("response_url")
        if injected is not None:
            status, extra, body = injected
        else:
            status, body = self._post_to_response_url(path, params, parse_error)
        self._state.calls.append(
            RecordedCall("response_url", params, dict(headers), body_format, status, body, path)
        )
        return status, extra, body

    def _post_to_response_url(
        self, path: str, params: JSONDict, parse_error: str | None
    ) -> tuple[int, str]:
        url_id = path.removeprefix(RESPONSE_URL_PATH)
        target = self._state.response_urls.get(url_id)
        if target is None:
            return 404, "expired_url"
        if target.uses >= RESPONSE_URL_MAX_USES:
            return 404, "used_url"
        if parse_error is not None:
            return 400, "invalid_payload"
        delete_original = params.get("delete_original") is True
        try:
            text, blocks = self._message_content(params, required=not delete_original)
        except SlackApiFailure as failure:
            return 400, failure.error
        target.uses += 1
        post = ResponseUrlPost(
            url=f"{self.url}{path}",
            channel=target.channel,
            user=target.user,
            text=text,
            blocks=blocks,
            response_type=str(params.get("response_type") or "ephemeral"),
            replace_original=params.get("replace_original") is True,
            delete_original=delete_original,
            thread_ts=params.get("thread_ts") or None,
        )
        self._state.response_posts.append(post)
        self._apply_response_post(target, post)
        return 200, "ok"

    def _apply_response_post(self, target: _ResponseUrl, post: ResponseUrlPost) -> None:
        original = None
        if target.message_ts is not None:
            messages = self._state.messages.get(target.channel, [])
            original = next((i for i, m in enumerate(messages) if m.ts == target.message_ts), None)
        if (post.replace_original or post.delete_original) and original is not None:
            current = self._state.messages[target.channel][original]
            if post.delete_original:
                changed = replace(current, deleted=True)
            else:
                changed = replace(
                    current, text=post.text, blocks=post.blocks, edits=current.edits + 1
                )
            self._state.messages[target.channel][original] = changed
        elif post.response_type == "in_channel":
            message = Message(
                target.channel,
                self._next_ts(),
                post.text,
                post.blocks,
                thread_ts=post.thread_ts,
                via="response_url",
            )
            self._state.messages.setdefault(target.channel, []).append(message)
        elif not post.delete_original:
            self._state.ephemerals.append(
                Ephemeral(
                    target.channel,
                    target.user,
                    post.text,
                    post.blocks,
                    post.thread_ts,
                    via="response_url",
                )
            )


# ---- HTTP plumbing -------------------------------------------------------------------


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _truthy(value: Any) -> bool:
    return value is True or value in ("true", "1", 1)


def _checked_metadata(metadata: Any) -> JSONDict | None:
    """Message metadata as Slack accepts it: an `event_type` of letters, digits and
    underscores, and an `event_payload` object."""
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not _METADATA_EVENT_TYPE.match(metadata["event_type"])
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackApiFailure("invalid_metadata_format")
    return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}


def _scope_needed(method: str, params: JSONDict, resolve: Callable[[str], str]) -> str | None:
    if method == "conversations.open":
        return "im:write"
    if method in ("conversations.history", "conversations.replies"):
        channel = resolve(str(params.get("channel") or ""))
        return {"D": "im:history", "G": "groups:history"}.get(channel[:1], "channels:history")
    return None


def _parse_params(
    query: str, headers: Mapping[str, str], raw_body: bytes
) -> tuple[JSONDict, str, str | None]:
    """Merge query string and body the way Slack reads them; decode JSON-encoded args."""
    params: JSONDict = dict(parse_qsl(query, keep_blank_values=True))
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not raw_body:
        return params, "none", None
    if content_type == "application/json":
        try:
            body = json.loads(raw_body)
        except ValueError:
            return params, "json", "invalid_json"
        if not isinstance(body, dict):
            return params, "json", "invalid_json"
        params.update(body)
        return params, "json", None
    if content_type == "multipart/form-data":
        return params, "multipart", "not_supported_by_fake"
    params.update(parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True))
    for name in _JSON_ENCODED_ARGS:
        value = params.get(name)
        if isinstance(value, str):
            try:
                params[name] = json.loads(value)
            except ValueError:
                error = "invalid_blocks_format" if name == "blocks" else "invalid_arguments"
                return params, "form", error
    for flag in ("replace_original", "delete_original"):
        if params.get(flag) in ("true", "false"):
            params[flag] = params[flag] == "true"
    return params, "form", None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the stdlib default of 5 drops connections under concurrency

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up before its answer (a bot shut down mid-call) is not a fault
        # of the fake; anything else still prints its traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeSlack/1.0"

        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            try:
                status, extra_headers, body = fake.handle(
                    split.path, split.query, dict(self.headers.items()), raw_body
                )
            except Exception as bug:  # a bug in the fake: say so instead of dropping the line
                traceback.print_exc()
                status, extra_headers = 500, {}
                body = {"ok": False, "error": "fake_slack_crashed", "detail": repr(bug)}
            if isinstance(body, dict):
                payload = json.dumps(body).encode("utf-8")
                content_type = "application/json; charset=utf-8"
            else:
                payload = body.encode("utf-8")
                content_type = "text/html"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; every call is in `FakeSlack.calls()`

    return Handler


def iter_blocks_text(blocks: Iterable[JSONDict]) -> Iterator[str]:
    """Every `text` string inside `blocks`, for assertions like `"approved" in ...`."""
    for block in blocks:
        yield from _texts(block)


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)
