"""`amlbot serve`: refuses to start without what its mode needs to verify Slack, and in
HTTP mode answers a signed command from a fresh process against a fake Slack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from approvals.config import AppConfig
from bot.serve import serve
from bot.settings import Settings
from bot.slack.app import SlackSettingsError, build_slack
from bot.slack.views.common import APPROVE_ACTION
from bot.wiring import Core
from tests.conftest import postgres_schema_url
from tests.fakes.serving import free_port
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import (
    block_actions_payload,
    interactive_body,
    post_signed,
    slash_command_body,
)
from tests.slack.conftest import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CHANNEL,
    ROOT,
    SIGNING_SECRET,
    USERS,
    scrape,
    start_serve_http,
    wait_for,
)


def test_http_mode_refuses_to_start_without_a_signing_secret(
    demo_config: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(slack_bot_token=SecretStr(BOT_TOKEN), slack_signing_secret=None)
    assert serve(settings, demo_config, http=True, host="127.0.0.1", port=0) == 2
    err = capsys.readouterr().err
    assert "SLACK_SIGNING_SECRET is not set" in err
    assert "to try the bot without Slack, run `amlbot console`" in err


def test_socket_mode_refuses_to_start_without_an_app_token(
    demo_config: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_app_token=None,
    )
    assert serve(settings, demo_config, http=False, host="127.0.0.1", port=0) == 2
    assert "SLACK_APP_TOKEN" in capsys.readouterr().err


def test_socket_mode_talks_to_the_configured_api_url(core: Core) -> None:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    settings = Settings(
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_app_token=SecretStr("xapp-1-test"),
        slack_api_url="http://127.0.0.1:9/api",
    )
    bot = build_slack(core, settings, socket_mode=True)

    async def socket_mode_api_url() -> str:
        handler = AsyncSocketModeHandler(bot.app, "xapp-1-test")  # connects only on start
        try:
            return str(handler.client.web_client.base_url)
        finally:
            await handler.client.close()

    assert asyncio.run(socket_mode_api_url()) == "http://127.0.0.1:9/api/"
    assert bot.web_client.base_url == "http://127.0.0.1:9/api/"
    bot.edge.close()


def test_http_mode_cannot_be_built_without_a_signing_secret(core: Core) -> None:
    settings = Settings(slack_bot_token=SecretStr(BOT_TOKEN), slack_signing_secret=None)
    with pytest.raises(SlackSettingsError, match="SLACK_SIGNING_SECRET"):
        build_slack(core, settings)


EVENTGRID_SECRET = "eventgrid-test-secret"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FakeSlack, subprocess.Popen[str]]]:
    """`amlbot serve --http` in its own process, as the README runs it."""
    yield from _serve(f"sqlite:///{tmp_path / 'amlbot.sqlite3'}")


@pytest.fixture
def served_on_postgres() -> Iterator[tuple[str, FakeSlack, subprocess.Popen[str]]]:
    """The same on PostgreSQL, where `serve` runs its workers as `amlbot work` children."""
    for url in postgres_schema_url():
        yield from _serve(url, AMLBOT_WORK_PROCESSES="1")


@pytest.fixture
def database_and_served_on_postgres() -> Iterator[
    tuple[str, tuple[str, FakeSlack, subprocess.Popen[str]]]
]:
    """`served_on_postgres`, and its database's URL."""
    for database in postgres_schema_url():
        for served in _serve(database, AMLBOT_WORK_PROCESSES="1"):
            yield database, served


def _serve(
    database_url: str, **extra_env: str
) -> Iterator[tuple[str, FakeSlack, subprocess.Popen[str]]]:
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
        port, work_health_port = free_port(), free_port()
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "AMLBOT_DATABASE_URL": database_url,
            "AMLBOT_EVENTGRID_SECRET": EVENTGRID_SECRET,
            **extra_env,
        }
        process = start_serve_http(port, work_health_port, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _healthy(url, process), timeout=30, what="amlbot serve to answer")
            # And its worker: it starts after the edge, at idle CPU priority, and on a loaded machine
            # may take many seconds to import; the tests expect answers within seconds.
            worker = f"http://127.0.0.1:{work_health_port}/readyz"
            wait_for(lambda: _status(worker) == 200, timeout=90, what="the worker ready")
            yield url, slack, process
        finally:
            process.terminate()
            try:  # its workers have SHUTDOWN_GRACE_SECONDS (20 s) to finish what they hold
                _, errors = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                _, errors = process.communicate(timeout=10)
                errors += "\n(amlbot serve did not exit within 60 s of SIGTERM)"
            print(errors)  # shown by pytest when the test failed: what the server logged
            assert "Traceback" not in errors and "did not exit" not in errors, errors


def _healthy(url: str, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        raise AssertionError(
            f"amlbot serve exited: {process.stderr.read() if process.stderr else ''}"
        )
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_serve_http_posts_a_card_and_executes_one_approval(
    served: tuple[str, FakeSlack, subprocess.Popen[str]],
) -> None:
    url, slack, _ = served
    body = slash_command_body(
        'access request gpu-cluster --for 2h --reason "fine-tune BERT"',
        user_id=ALICE,
        response_url=slack.response_url(CHANNEL, ALICE),
    )
    assert post_signed(url, "/slack/events", body, secret=SIGNING_SECRET).status == 200
    # The scheduler's first idle digest may reach the channel before the card does.
    card = wait_for(
        lambda: [m for m in slack.messages_in(CHANNEL) if "Access to cluster" in m.all_text],
        timeout=10,
        what="the card",
    )[0]
    click = interactive_body(
        block_actions_payload(
            action_id=APPROVE_ACTION,
            user_id=BOB,
            value="1",
            block_id="decision",
            message_ts=card.ts,
            response_url=slack.response_url(CHANNEL, BOB, message_ts=card.ts),
        )
    )
    for _ in range(2):  # the same click delivered twice
        assert post_signed(url, "/slack/events", click, secret=SIGNING_SECRET).status == 200
    wait_for(
        lambda: "done" in slack.message(CHANNEL, card.ts).all_text, timeout=10, what="card done"
    )
    approvals = [p for p in slack.response_posts() if p.user == BOB]
    assert len(approvals) == 1 and "Approved #1" in approvals[0].text


def test_serve_runs_the_sweeps_so_the_idle_digest_reaches_the_channel(
    served: tuple[str, FakeSlack, subprocess.Popen[str]],
) -> None:
    _, slack, _ = served
    # The demo's cpu-cluster keeps a node up (min_nodes 1): the first sweep reports it.
    digest = wait_for(
        lambda: [m for m in slack.messages_in(CHANNEL) if "cpu-cluster" in m.all_text],
        timeout=20,
        what="the idle digest",
    )[0]
    assert "Set minimum to 0" in digest.all_text or "minimum" in digest.all_text


def worker_pids(parent: int) -> list[int]:
    """amlbot's worker processes: the `amlbot work` children of `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent and b"work" in command.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.fixture
def served_draining(tmp_path: Path) -> Iterator[tuple[str, FakeSlack, subprocess.Popen[str]]]:
    """`served`, draining for a minute after SIGTERM: longer than any test takes to look."""
    yield from _serve(f"sqlite:///{tmp_path / 'amlbot.sqlite3'}", AMLBOT_DRAIN_SECONDS="60")


def test_after_sigterm_serve_is_not_ready_but_takes_and_answers_commands_until_drained(
    served_draining: tuple[str, FakeSlack, subprocess.Popen[str]],
) -> None:
    """A load balancer goes on sending for a moment after a pod is told to stop: the
    commands it sends then are kept and answered, not refused at the socket."""
    url, slack, process = served_draining
    assert _status(f"{url}/readyz") == 200

    process.send_signal(signal.SIGTERM)
    wait_for(lambda: _status(f"{url}/readyz") == 503, timeout=10, what="/readyz at 503")
    body = slash_command_body(
        "help", user_id=ALICE, response_url=slack.response_url(CHANNEL, ALICE)
    )
    assert post_signed(url, "/slack/events", body, secret=SIGNING_SECRET).status == 200
    wait_for(
        lambda: [p for p in slack.response_posts() if p.user == ALICE] or None,
        timeout=30,
        what="the help reply, while draining",
    )
    assert process.poll() is None  # still draining: the minute has not passed

    process.send_signal(signal.SIGTERM)  # a second signal: stop now
    assert process.wait(timeout=45) == 0


@pytest.mark.postgres
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_worker_is_replaced_and_the_bot_goes_on_answering(
    served_on_postgres: tuple[str, FakeSlack, subprocess.Popen[str]],
) -> None:
    url, slack, process = served_on_postgres
    [worker] = wait_for(lambda: worker_pids(process.pid) or None, timeout=10, what="a worker")

    os.kill(worker, signal.SIGKILL)
    # Sent while no worker runs: the edge keeps it, and the replacement answers it.
    body = slash_command_body(
        "help", user_id=ALICE, response_url=slack.response_url(CHANNEL, ALICE)
    )
    assert post_signed(url, "/slack/events", body, secret=SIGNING_SECRET).status == 200

    [replacement] = wait_for(
        lambda: [pid for pid in worker_pids(process.pid) if pid != worker] or None,
        timeout=20,
        what="a new worker",
    )
    assert replacement != worker
    # A bound on liveness, not a speed: the replacement runs at idle CPU priority and may share
    # a loaded machine's cores, so it may take a while to import and connect.
    wait_for(
        lambda: [p for p in slack.response_posts() if p.user == ALICE] or None,
        timeout=60,
        what="the help reply, from the new worker",
    )
    assert worker not in worker_pids(process.pid)
    assert replacement in worker_pids(process.pid)


def test_an_event_grid_delivery_is_accepted_and_recorded_by_a_worker(
    served: tuple[str, FakeSlack, subprocess.Popen[str]],
) -> None:
    url, _, _ = served
    event = {
        "id": "5b1d5a1e-0000-4000-8000-000000000001",
        "topic": "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/"
        "rg-amlbot-demo/providers/Microsoft.MachineLearningServices/workspaces/mlw-demo",
        "subject": "experiments/e/runs/nobody-follows-this-job",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "eventTime": "2026-01-05T09:00:00.000Z",
        "data": {"runId": "nobody-follows-this-job", "runStatus": "Running"},
        "dataVersion": "2",
        "metadataVersion": "1",
    }
    response = post_signed(
        url,
        f"/azure/events?code={EVENTGRID_SECRET}",
        json.dumps([event]),
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
    )
    assert (response.status, json.loads(response.body)) == (200, {"accepted": 1})
    # What a worker then records for a followed job is tested in tests/notify/test_eventgrid.py;
    # here, that the served app hands the delivery over and answers at once (and the
    # fixture's teardown, that nothing logged a traceback).


def test_the_event_grid_secret_in_the_query_string_never_reaches_the_access_log(
    tmp_path: Path,
) -> None:
    """Event Grid's documented `?code=` carries the shared secret; uvicorn's access log
    (stdout, at INFO) shows the request with its query string cut."""
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
        port = free_port()
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "AMLBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'amlbot.sqlite3'}",
            "AMLBOT_EVENTGRID_SECRET": EVENTGRID_SECRET,
            "AMLBOT_LOG_LEVEL": "INFO",
            "AMLBOT_WORK_PROCESSES": "1",
        }
        # stdout: uvicorn's access log
        process = start_serve_http(port, free_port(), env=env, stdout=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _healthy(url, process), timeout=30, what="amlbot serve to answer")
            response = post_signed(
                url,
                f"/azure/events?code={EVENTGRID_SECRET}",
                "[]",
                headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            assert response.status == 400  # an empty batch; answered, and so logged
        finally:
            process.terminate()
            out, err = process.communicate(timeout=15)
    logged = out + err
    assert "POST /azure/events?[redacted]" in logged
    assert EVENTGRID_SECRET not in logged


def test_amlbot_work_answers_probes_and_metrics_on_its_health_port(tmp_path: Path) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMLBOT_"))}
    port = free_port()
    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
        env = {
            **inherited,
            "AMLBOT_LOG_LEVEL": "WARNING",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": slack.base_url,
            "AMLBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'amlbot.sqlite3'}",
            "AMLBOT_RETAIL_PRICES_URL": "off",  # no call to the public prices API
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "work", "--health-port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _status(f"{url}/readyz") == 200, timeout=30, what="readiness")
            assert _status(f"{url}/healthz") == 200

            def after_a_sweep() -> dict[str, float] | None:
                samples = scrape(f"{url}/metrics")
                return samples if samples.get("amlbot_sweep_duration_seconds_count") else None

            samples = wait_for(after_a_sweep, what="a sweep round counted")
            assert samples['amlbot_inbox_items{status="pending"}'] == 0
            assert samples["amlbot_sweep_last_success_timestamp_seconds"] > 0
        finally:
            process.terminate()
            _, errors = process.communicate(timeout=30)
        assert process.returncode == 0 and "Traceback" not in errors, errors


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)
    except OSError:
        return 0


def test_amlbot_work_whose_health_port_is_taken_exits_before_claiming_anything(
    tmp_path: Path,
) -> None:
    """A worker that cannot serve its probes refuses to start; it must not first take work
    it then walks away from (held under a lease nobody renews) or do it unseen."""
    import socket

    from approvals import inbox_accept
    from approvals.store import Store
    from approvals.tables import InboxRow, InboxStatus
    from workspaces.clock import SystemClock

    database = f"sqlite:///{tmp_path / 'amlbot.sqlite3'}"
    store = Store.open(database)
    with store.transaction() as session:
        inbox_accept.accept(session, "waiting", "slack.run_command", {}, SystemClock().now())
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMLBOT_"))}
    with (
        FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack,
        socket.socket() as taken,
    ):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **inherited,
            "AMLBOT_LOG_LEVEL": "WARNING",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": slack.base_url,
            "AMLBOT_DATABASE_URL": database,
        }
        command = ["work", "--health-port", str(port), "--health-host", "127.0.0.1"]
        finished = subprocess.run(
            [sys.executable, "-m", "bot.cli", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert finished.returncode == 2, finished.stderr
    assert f"cannot serve /healthz, /readyz and /metrics on 127.0.0.1:{port}" in finished.stderr
    assert "Traceback" not in finished.stderr
    with store.transaction() as session:
        row = session.query(InboxRow).filter_by(delivery_key="waiting").one()
        assert (row.status, row.attempts, row.claimed_by) == (InboxStatus.PENDING, 0, None)
    store.engine.dispose()


@pytest.mark.postgres
def test_a_command_the_database_holds_too_long_is_answered_within_slacks_window(
    database_and_served_on_postgres: tuple[str, tuple[str, FakeSlack, subprocess.Popen[str]]],
) -> None:
    """The inbox insert waits on the database (here a lock; in production a host gone
    dark mid-statement): the person hears within Slack's 3 s (the request gives up then,
    as Slack does) that amlbot could not confirm it took the command, instead of Slack's
    own timeout, and the held statement is cancelled, so nothing runs behind their back.
    The next command goes through."""
    from sqlalchemy import create_engine, text

    database, (url, slack, _) = database_and_served_on_postgres
    holder = create_engine(database)
    # The acks' inserts waiting for a lock on this schema's inbox, not every schema's:
    # tests running beside this one hold some.
    held_inserts = text(
        "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
        "WHERE relation = 'inbox'::regclass AND NOT granted "
        "AND query LIKE 'WITH kept AS (INSERT INTO inbox%'"
    )
    try:
        with holder.begin() as connection:
            connection.execute(text("LOCK TABLE inbox IN SHARE MODE"))  # inserts wait
            body = slash_command_body(
                "help", user_id=ALICE, response_url=slack.response_url(CHANNEL, ALICE)
            )
            answer = post_signed(url, "/slack/events", body, secret=SIGNING_SECRET, timeout=3)
            with holder.connect() as looking:
                # psycopg gives the cancel request 5 s and the statement 5 s more to end;
                # on a loaded machine the cancel's own connection takes a while to open.
                wait_for(
                    lambda: looking.execute(held_inserts).scalar() == 0,
                    timeout=15,
                    what="the held insert cancelled while the lock is held",
                )
        assert answer.status == 200
        assert "could not confirm it took this" in answer.body
        with holder.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM inbox")).scalar() == 0
        body = slash_command_body(
            "help", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB)
        )
        assert post_signed(url, "/slack/events", body, secret=SIGNING_SECRET).body == ""
        wait_for(
            lambda: [p for p in slack.response_posts() if p.user == BOB] or None,
            timeout=10,
            what="the next command's reply",
        )
        assert not [p for p in slack.response_posts() if p.user == ALICE]
    finally:
        holder.dispose()


def test_on_sqlite_a_command_the_write_lock_holds_too_long_is_refused_plainly_in_time(
    served: tuple[str, FakeSlack, subprocess.Popen[str]], tmp_path: Path
) -> None:
    """The embedded default: the event loop waits for its turn at SQLite's write lock,
    held here by another process, without blocking. Within Slack's 3 s (the request gives
    up then, as Slack does) the person hears that nothing was done and to try again:
    nothing of it was written, so nothing runs behind their back. Once the lock is free,
    the next command goes through."""
    import fcntl

    url, slack, _ = served
    turns = os.open(tmp_path / "amlbot.sqlite3-amlbot-writers", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(turns, fcntl.LOCK_EX)
        body = slash_command_body(
            "help", user_id=ALICE, response_url=slack.response_url(CHANNEL, ALICE)
        )
        answer = post_signed(url, "/slack/events", body, secret=SIGNING_SECRET, timeout=3)
        assert answer.status == 200
        assert "could not take this right now" in answer.body
        assert "Nothing was done" in answer.body
    finally:
        fcntl.flock(turns, fcntl.LOCK_UN)
        os.close(turns)
    body = slash_command_body("help", user_id=BOB, response_url=slack.response_url(CHANNEL, BOB))
    assert post_signed(url, "/slack/events", body, secret=SIGNING_SECRET).body == ""
    wait_for(
        lambda: [p for p in slack.response_posts() if p.user == BOB] or None,
        timeout=10,
        what="the next command's reply",
    )
    assert not [p for p in slack.response_posts() if p.user == ALICE]
