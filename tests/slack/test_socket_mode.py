"""`amlbot serve` in Socket Mode, its default: a fresh process configured by the
environment alone connects to a fake Slack's Socket Mode endpoint, acks the envelopes
sent over the websocket, and answers through the fake Web API."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import create_engine, func, select

from approvals.tables import GrantRow
from bot.slack.views.common import APPROVE_ACTION
from tests.fakes.serving import free_port
from tests.fakes.slack_api import FakeSlack, JSONDict, Message
from tests.fakes.slack_signing import block_actions_payload, slash_command_payload
from tests.fakes.slack_socket_mode import Ack, FakeSocketMode
from tests.slack.conftest import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CHANNEL,
    USERS,
    scrape,
    start_serve,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

ACCESS = 'access request gpu-cluster --for 2h --reason "train"'


class SocketModeBot:
    """`amlbot serve` in its own process, and the fake Slack it is connected to."""

    def __init__(
        self,
        process: subprocess.Popen[str],
        slack: FakeSlack,
        sm: FakeSocketMode,
        port: int,
        work_port: int,
    ):
        self.process = process
        self.url = f"http://127.0.0.1:{port}"  # /healthz, /readyz, /metrics
        # serve's `amlbot work` child, which handles the commands (`--work-health-port`).
        self.work_url = f"http://127.0.0.1:{work_port}"
        self.slack = slack
        self.socket_mode = sm
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    # ---- acting as Slack ---------------------------------------------------------------

    def command(self, user: str, text: str) -> str:
        """A `/aml` invocation; returns its envelope id."""
        payload = slash_command_payload(
            text, user_id=user, response_url=self.slack.response_url(CHANNEL, user)
        )
        return self.socket_mode.send("slash_commands", payload)

    def click_payload(self, user: str, card: Message, action_id: str) -> JSONDict:
        """`user` clicking the button `action_id` on `card`, as the card carries it."""
        block_id, button = next(
            (block["block_id"], element)
            for block in card.blocks
            if block["type"] == "actions"
            for element in block["elements"]
            if element["action_id"] == action_id
        )
        return block_actions_payload(
            action_id=action_id,
            user_id=user,
            value=button["value"],
            block_id=block_id,
            channel_id=card.channel,
            message_ts=card.ts,
            message={"type": "message", "text": card.text, "blocks": card.blocks},
            response_url=self.slack.response_url(card.channel, user, message_ts=card.ts),
        )

    # ---- looking, with bounded waits -------------------------------------------------

    def wait(self, check: Callable[[], T | None], what: str, timeout: float = 15) -> T:
        """`wait_for`, failing at once if the bot exits or logs a traceback."""

        def check_alive_first() -> T | None:
            self.assert_healthy()
            return check()

        return wait_for(check_alive_first, timeout=timeout, what=what)

    def wait_for_worker(self) -> None:
        """Until serve's worker child answers ready: it starts after the edge, at idle CPU priority,
        and on a loaded machine may take many seconds to import; the tests expect answers
        within seconds."""
        self.wait(lambda: probe(f"{self.work_url}/readyz") == 200, "the worker ready", 90)

    def acked(self, envelope_id: str) -> Ack:
        return self.wait(lambda: self.socket_mode.acks(envelope_id), f"ack of {envelope_id}")[0]

    def answer_to(self, user: str, containing: str) -> str:
        """The text of the first ephemeral answer to `user` containing `containing`."""
        return self.wait(
            lambda: next(
                (
                    p.text
                    for p in self.slack.response_posts()
                    if p.user == user and p.response_type == "ephemeral" and containing in p.text
                ),
                None,
            ),
            f"an answer to {user} containing {containing!r}",
        )

    def card(self, request_id: int) -> Message:
        return self.wait(
            lambda: next(
                (
                    m
                    for m in self.slack.messages_in(CHANNEL)
                    if m.thread_ts is None and m.text.startswith(f"#{request_id} ")
                ),
                None,
            ),
            f"the card of #{request_id}",
        )

    # ---- the process -----------------------------------------------------------------

    def stderr(self) -> str:
        return "".join(self._stderr)

    def assert_healthy(self) -> None:
        self.assert_no_traceback()
        assert self.process.poll() is None, f"amlbot serve exited:\n{self.stderr()}"

    def assert_no_traceback(self) -> None:
        if "Traceback" not in self.stderr():
            return
        try:
            errors = wait_for(self._whole_traceback, what="the rest of the traceback")
        except AssertionError:  # show what did arrive: the traceback is the finding
            errors = self.stderr()
        raise AssertionError(f"amlbot serve logged a traceback:\n{errors}")

    def _whole_traceback(self) -> str | None:
        """stderr once its first traceback has reached its exception line (the pipe may
        deliver a traceback in pieces)."""
        errors = self.stderr()
        after = errors[errors.index("Traceback") :].splitlines()[1:]
        ended = any(line and not line[0].isspace() for line in after)
        return errors if ended or not self._reader.is_alive() else None

    def stop(self) -> int:
        """SIGTERM, as a container runtime stops it; the exit code, once it is clear that
        nothing logged a traceback."""
        self.process.terminate()
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self._reader.join(timeout=5)
            raise AssertionError(
                f"amlbot serve did not stop within 20 s of SIGTERM:\n{self.stderr()[-6000:]}"
            ) from None
        self._reader.join(timeout=5)
        self.assert_no_traceback()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)

    def _read_stderr(self) -> None:
        # The reader closes the pipe at its end: `amlbot work` children (which end with
        # their parent, but may take a while on a loaded machine) hold it open after the
        # parent is killed, and closing it under the reading thread would wait for them.
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self._stderr.append(line)


def serve_env(slack: FakeSlack, tmp_path: Path, app_token: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": app_token,
        "SLACK_API_URL": slack.base_url,
        "AMLBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'amlbot.sqlite3'}",
    }


@pytest.fixture
def fake_socket_mode() -> Iterator[tuple[FakeSlack, FakeSocketMode]]:
    with (
        FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack,
        FakeSocketMode(slack) as socket_mode,
    ):
        yield slack, socket_mode


def start_bot(slack: FakeSlack, socket_mode: FakeSocketMode, env: dict[str, str]) -> SocketModeBot:
    """`amlbot serve` in Socket Mode, its probes and its worker's on ports of their own."""
    port, work_port = free_port(), free_port()
    process = start_serve(
        "--host",
        "127.0.0.1",
        "--health-port",
        str(port),
        "--work-health-port",
        str(work_port),
        env=env,
    )
    return SocketModeBot(process, slack, socket_mode, port, work_port)


@pytest.fixture
def bot(
    fake_socket_mode: tuple[FakeSlack, FakeSocketMode], tmp_path: Path
) -> Iterator[SocketModeBot]:
    """`amlbot serve` with no flag: Socket Mode, connected before the test starts."""
    slack, socket_mode = fake_socket_mode
    running = start_bot(slack, socket_mode, serve_env(slack, tmp_path, socket_mode.app_token))
    try:
        running.wait(lambda: socket_mode.connected, "the Socket Mode connection", timeout=30)
        running.wait_for_worker()
        yield running
    finally:
        running.close()


def grants(tmp_path: Path) -> int:
    engine = create_engine(f"sqlite:///{tmp_path / 'amlbot.sqlite3'}")
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(GrantRow)) or 0)
    finally:
        engine.dispose()


def buttons(message: Message) -> list[str]:
    return [
        element["action_id"]
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_slash_command_is_acked_on_the_socket_and_answered_through_response_url(
    bot: SocketModeBot,
) -> None:
    envelope_id = bot.command(ALICE, "help")
    assert bot.acked(envelope_id).payload is None  # an empty ack: the answer comes later
    assert "/aml access request" in bot.answer_to(ALICE, containing="/aml")
    assert bot.stop() == 0


def test_privileged_request_posts_a_card_that_only_the_lead_can_approve_once(
    bot: SocketModeBot, tmp_path: Path
) -> None:
    bot.acked(bot.command(ALICE, ACCESS))
    assert "is waiting for a team lead" in bot.answer_to(ALICE, containing="#1")
    card = bot.card(1)
    assert card.via == "chat.postMessage" and buttons(card) == [APPROVE_ACTION, "amlbot.deny"]

    own = bot.socket_mode.send("interactive", bot.click_payload(ALICE, card, APPROVE_ACTION))
    bot.acked(own)
    assert "Only team leads of `demo` (bob) can approve #1" in bot.answer_to(
        ALICE, containing="Only team leads"
    )

    click = bot.click_payload(BOB, card, APPROVE_ACTION)
    for envelope_id in [bot.socket_mode.send("interactive", click) for _ in range(2)]:
        bot.acked(envelope_id)

    def decided_card() -> Message | None:
        shown = bot.slack.message(CHANNEL, card.ts)
        return shown if shown.edits and not buttons(shown) else None

    done = bot.wait(decided_card, "the card to be updated in place")
    assert "done" in done.all_text and "approved by bob" in done.all_text
    assert bot.slack.calls("chat.update") and not bot.slack.calls("chat.delete")
    assert "Approved #1" in bot.answer_to(BOB, containing="Approved")
    assert bot.stop() == 0
    approvals = [p for p in bot.slack.response_posts() if p.user == BOB]
    assert len(approvals) == 1
    assert grants(tmp_path) == 1


def test_socket_mode_runs_the_sweeps_so_the_idle_digest_reaches_the_channel(
    bot: SocketModeBot,
) -> None:
    # The first worker runs the sweeps; a worker that cannot start in Socket Mode (as they
    # once could not) leaves the channel without a digest. The demo's cpu-cluster keeps a
    # node up (min_nodes 1): the first sweep reports it.
    digest = bot.wait(
        lambda: next(
            (m for m in bot.slack.messages_in(CHANNEL) if "cpu-cluster" in m.all_text), None
        ),
        "the idle digest",
    )
    assert "1 idle compute item in `demo`" in digest.all_text
    assert bot.stop() == 0


def test_a_refresh_from_slack_reconnects_and_the_new_connection_is_served(
    bot: SocketModeBot,
) -> None:
    bot.socket_mode.disconnect("refresh_requested")
    bot.wait(lambda: bot.socket_mode.connections_opened == 2, "a second connection")
    ack = bot.acked(bot.command(ALICE, "help"))
    assert ack.connection == 2
    bot.answer_to(ALICE, containing="/aml")
    assert bot.stop() == 0


def test_serve_refuses_an_app_token_slack_does_not_accept(
    fake_socket_mode: tuple[FakeSlack, FakeSocketMode], tmp_path: Path
) -> None:
    slack, socket_mode = fake_socket_mode
    process = start_serve(
        "--health-port", "0", env=serve_env(slack, tmp_path, "xapp-1-A0AMLBOT0-2-revoked")
    )
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in errors
    assert [c.error for c in slack.calls("apps.connections.open")] == ["invalid_auth"]
    assert not socket_mode.connections_opened


def probe(url: str) -> int:
    """The HTTP status `url` answers; 0 when nothing answers (not listening yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)
    except OSError:
        return 0


def test_socket_mode_answers_health_readiness_and_metrics_beside_the_socket(
    bot: SocketModeBot,
) -> None:
    assert probe(f"{bot.url}/healthz") == 200
    bot.wait(lambda: probe(f"{bot.url}/readyz") == 200, "readiness")
    bot.acked(bot.command(ALICE, ACCESS))
    bot.card(1)

    def moved() -> tuple[dict[str, float], dict[str, float]] | None:
        # The edge acks and counts acks; its worker child runs the command and counts it.
        edge, work = scrape(f"{bot.url}/metrics"), scrape(f"{bot.work_url}/metrics")
        ok = work.get('amlbot_commands_total{command="access request",outcome="ok"}')
        done = ok == 1 and edge['amlbot_inbox_items{status="pending"}'] == 0
        return (edge, work) if done else None

    edge, work = bot.wait(moved, "the command counted and the inbox empty")
    assert edge['amlbot_requests{action="access",state="pending"}'] == 1
    assert work['amlbot_slack_api_calls_total{method="chat.postMessage",status="ok"}'] >= 1
    assert edge['amlbot_slack_ack_seconds_count{handler="slack.run_command"}'] >= 1
    assert bot.stop() == 0


def readiness(bot: SocketModeBot) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{bot.url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())
    except OSError:
        return 0, {}  # not listening yet


def test_socket_mode_is_not_ready_while_its_connection_to_slack_is_down(
    bot: SocketModeBot,
) -> None:
    bot.wait(lambda: readiness(bot)[0] == 200, "readiness")
    assert readiness(bot)[1]["slack"] == "ok"
    bot.socket_mode.stop()  # Slack gone: the client retries meanwhile

    def slack_down() -> bool:
        status, checks = readiness(bot)
        return status == 503 and checks.get("slack") == "not connected"

    bot.wait(slack_down, "readiness to notice")
    assert probe(f"{bot.url}/healthz") == 200  # alive: nothing to restart


def test_sigterm_turns_readiness_off_before_the_work_in_hand_is_finished(
    fake_socket_mode: tuple[FakeSlack, FakeSocketMode], tmp_path: Path
) -> None:
    slack, socket_mode = fake_socket_mode
    env = {**serve_env(slack, tmp_path, socket_mode.app_token)}
    # Each change in the simulated workspace takes 3 s, as an Azure call would.
    env["AMLBOT_SIMULATED_LATENCY_SECONDS"] = "3"
    bot = start_bot(slack, socket_mode, env)
    process = bot.process
    try:
        bot.wait(lambda: readiness(bot)[0] == 200, "readiness", timeout=30)
        bot.wait_for_worker()
        bot.acked(bot.command(ALICE, ACCESS))
        card = bot.card(1)
        bot.acked(bot.socket_mode.send("interactive", bot.click_payload(BOB, card, APPROVE_ACTION)))
        bot.wait(
            lambda: scrape(f"{bot.url}/metrics")['amlbot_inbox_items{status="running"}'] == 1,
            "the approval in hand",
        )
        process.send_signal(signal.SIGTERM)
        assert bot.wait(lambda: readiness(bot) == (503, {"status": "draining"}), "draining")
        assert process.poll() is None  # still finishing the approval
        assert process.wait(timeout=30) == 0
        assert grants(tmp_path) == 1  # finished, not dropped
    finally:
        bot.close()


def test_serve_logs_json_lines_without_the_bot_or_app_token_even_at_debug(
    fake_socket_mode: tuple[FakeSlack, FakeSocketMode], tmp_path: Path
) -> None:
    slack, socket_mode = fake_socket_mode
    env = {**serve_env(slack, tmp_path, socket_mode.app_token), "AMLBOT_LOG_LEVEL": "DEBUG"}
    bot = start_bot(slack, socket_mode, env)
    try:
        bot.wait(lambda: socket_mode.connected, "the Socket Mode connection", timeout=30)
        bot.wait_for_worker()
        bot.acked(bot.command(ALICE, ACCESS))
        card = bot.card(1)
        bot.acked(bot.socket_mode.send("interactive", bot.click_payload(BOB, card, APPROVE_ACTION)))
        bot.answer_to(BOB, containing="Approved")
        assert bot.stop() == 0
    finally:
        bot.close()
    lines = bot.stderr().splitlines()
    logged = [json.loads(line) for line in lines]  # one JSON object per line, each
    assert any(entry["level"] == "DEBUG" for entry in logged)
    assert any(entry.get("correlation_id", "").startswith("slash_command:") for entry in logged)
    assert BOT_TOKEN not in bot.stderr()
    assert socket_mode.app_token not in bot.stderr()
