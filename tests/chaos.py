"""Crash rounds against the real `amlbot serve` process: requests are approved while every
simulated Azure call takes a while, the server (or its worker alone) is killed with SIGKILL
at a random moment, a new one is started, and then every promise is checked from the
database and from what the fake Slack received.

Used by tests/e2e (a few rounds in CI) and bench/kill_loop.py (fifty, with figures).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from approvals.actions.access import assignment_name
from approvals.actions.job import job_name
from approvals.payloads import DatastorePayload
from approvals.tables import GrantRow, RequestRow
from tests.fakes.serving import free_port
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import (
    block_actions_payload,
    interactive_body,
    post_signed,
    slash_command_body,
)

ROOT = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "chaos-signing-secret"
BOT_TOKEN = "xoxb-chaos"
CHANNEL = "C0CHAOS001"
LEAD = "U0LEAD0001"
FINAL = {"succeeded", "failed", "denied", "cancelled", "expired"}


def people(count: int) -> dict[str, str]:
    """Slack user id -> name of `count` data scientists (each round has its own)."""
    return {f"U0DS{n:06d}": f"ds{n}" for n in range(count)}


def write_config(path: Path, scientists: dict[str, str]) -> Path:
    config: dict[str, Any] = {
        "people": {
            "lead": {
                "slack_id": LEAD,
                "email": "lead@example.com",
                "object_id": "22222222-2222-4222-8222-222222222222",
            },
            **{
                name: {
                    "slack_id": user_id,
                    "email": f"{name}@example.com",
                    "object_id": f"11111111-1111-4111-8111-{int(name[2:]):012d}",
                }
                for user_id, name in scientists.items()
            },
        },
        "defaults": {"policy": {"jobs": {"without_grant": "approval"}}},
        "workspaces": {
            "demo": {
                "backend": "local",
                "azure": {
                    "subscription_id": "00000000-0000-4000-8000-000000000000",
                    "resource_group": "rg-chaos",
                    "workspace_name": "mlw-chaos",
                },
                "channel": CHANNEL,
                "team_leads": ["lead"],
                "data_scientists": sorted(scientists.values()),
                "clusters": [
                    {
                        "name": "gpu-cluster",
                        "vm_sku": "STANDARD_NC6s_v3",
                        "nodes": 2,
                        "priority": "lowpriority",
                        "min_nodes": 0,
                    }
                ],
            }
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class ServedBot:
    """`amlbot serve --http` in a session of its own, so it and its workers die together."""

    database_url: str
    config: Path
    slack: FakeSlack
    latency: float
    work_processes: int = 1
    # After SIGTERM, seconds the server still takes requests (AMLBOT_DRAIN_SECONDS).
    drain_seconds: float = 0.0
    port: int = field(default_factory=free_port)
    # Not `serve`'s default (the port after --port): two bots on neighbouring ports would
    # each find the other's port taken.
    work_health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # What the server and its workers logged (errors only), for a failing test to show.
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMLBOT_"))}
        env = {
            **inherited,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack.base_url,
            "AMLBOT_DATABASE_URL": self.database_url,
            "AMLBOT_CONFIG": str(self.config),
            "AMLBOT_LOG_LEVEL": "ERROR",
            "AMLBOT_WORK_PROCESSES": str(self.work_processes),
            "AMLBOT_SIMULATED_LATENCY_SECONDS": str(self.latency),
            "AMLBOT_RETAIL_PRICES_URL": "off",  # no call to the public prices API
            "AMLBOT_DRAIN_SECONDS": str(self.drain_seconds),
        }
        if self.log_path is None:  # beside its config, in the test's (or bench's) folder
            self.log_path = self.config.parent / f"served-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bot.cli",
                    "serve",
                    "--http",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--work-health-port",
                    str(self.work_health_port),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        # The edge answers first; its worker starts after it, at idle CPU priority, and on a loaded
        # machine may take many seconds to import and claim.
        probes = [f"{self.url}/healthz"]
        if self.work_processes:
            probes.append(f"http://127.0.0.1:{self.work_health_port}/readyz")
        deadline = time.monotonic() + 90
        while probes and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"amlbot serve exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(probes[0], timeout=1):
                    probes.pop(0)
            except OSError:  # refused, or not ready yet (an HTTPError is an OSError)
                time.sleep(0.1)
        if probes:
            raise AssertionError(f"amlbot serve: no answer from {probes[0]} within 90 s")

    def log(self, last: int = 40) -> str:
        """The last `last` lines the server and its workers logged."""
        if self.log_path is None or not self.log_path.exists():
            return "(nothing logged)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-last:]) or "(nothing logged)"

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent == self.process.pid and b"work" in command:
                found.append(int(entry.name))
        return found

    def kill_all(self) -> None:
        """SIGKILL to the server and its workers at once: nobody gets to clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def kill_worker(self) -> bool:
        pids = self.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return bool(pids)

    def terminate(self, timeout: float = 60) -> None:
        """SIGTERM, as a deploy does, and wait for a clean exit."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=timeout)

    def command(self, user_id: str, text_: str) -> int:
        body = slash_command_body(
            text_,
            user_id=user_id,
            channel_id=CHANNEL,
            response_url=self.slack.response_url(CHANNEL, user_id),
        )
        return post_signed(self.url, "/slack/events", body, secret=SIGNING_SECRET).status

    def approve(self, request_id: int, card_ts: str) -> int:
        payload = block_actions_payload(
            action_id="amlbot.approve",
            user_id=LEAD,
            value=str(request_id),
            block_id="decision",
            channel_id=CHANNEL,
            message_ts=card_ts,
            response_url=self.slack.response_url(CHANNEL, LEAD, message_ts=card_ts),
        )
        return post_signed(
            self.url, "/slack/events", interactive_body(payload), secret=SIGNING_SECRET
        ).status


def engine_for(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def card_ts(slack: FakeSlack, request_id: int) -> str | None:
    for message in slack.messages_in(CHANNEL):
        if message.thread_ts is None and message.text.startswith(f"#{request_id} "):
            return message.ts
    return None


@dataclass
class RoundResult:
    requests: int = 0
    # Requests not yet ended when the kill landed (the others had finished before it).
    in_flight_at_kill: int = 0
    recovered_in: float = 0.0
    problems: list[str] = field(default_factory=list)


def ask_and_approve(bot: ServedBot, engine: Engine, user_id: str, name: str, n: int) -> list[int]:
    """One access request, one datastore registration and one job from `user_id`, all
    approved by the lead. Returns the request ids."""
    before = _max_request_id(engine)
    assert bot.command(user_id, 'access request gpu-cluster --for 2h --reason "chaos"') == 200
    assert (
        bot.command(
            user_id,
            f"datastore register chaos{n} --kind blob --account chaosacct --container data{n}",
        )
        == 200
    )
    assert (
        bot.command(
            user_id,
            "job submit --compute gpu-cluster --environment azureml:AzureML-sklearn-1.5@latest "
            f'--command "python train.py --round {n}"',
        )
        == 200
    )
    # A liveness bound, not a latency figure: right after a restart the new worker process
    # is still starting while the recovery sweep runs, and a loaded CI machine is slow.
    ids: list[int] = wait(
        lambda: (
            (found := request_ids_from(engine, name, after=before)) and len(found) == 3 and found
        ),
        90,
        f"three requests from {name}",
    )
    for request_id in ids:
        ts = wait(lambda rid=request_id: card_ts(bot.slack, rid), 30, f"the card of #{request_id}")
        assert bot.approve(request_id, ts) == 200
    return ids


def _max_request_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT coalesce(max(id), 0) FROM requests")) or 0)


def request_ids_from(engine: Engine, requester: str, after: int) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                select(RequestRow.id)
                .where(RequestRow.requester == requester, RequestRow.id > after)
                .order_by(RequestRow.id)
            )
        )


def _ended(engine: Engine, ids: list[int]) -> int:
    with engine.connect() as connection:
        statuses = connection.scalars(select(RequestRow.status).where(RequestRow.id.in_(ids)))
        return sum(1 for status in statuses if status in FINAL)


def all_final(engine: Engine, ids: list[int]) -> bool:
    with engine.connect() as connection:
        statuses = (
            connection.execute(select(RequestRow.status).where(RequestRow.id.in_(ids)))
            .scalars()
            .all()
        )
    return len(statuses) == len(ids) and all(status in FINAL for status in statuses)


def check_promises(
    engine: Engine, slack: FakeSlack, ids: list[int], *, announced: bool = True
) -> list[str]:
    """What must hold for each request after any crash; the problems found. `announced`:
    the requests have cards in the channel (ones policy ran at once may have none)."""
    problems = []
    with engine.connect() as connection:
        rows = {
            row.id: row
            for row in connection.execute(select(RequestRow).where(RequestRow.id.in_(ids)))
        }
        assignments = Counter(
            connection.scalars(text("SELECT assignment_name FROM sim_role_assignments"))
        )
        granted = Counter(connection.scalars(select(GrantRow.assignment_name)))
        jobs = Counter(connection.scalars(text("SELECT name FROM sim_jobs")))
        datastores = Counter(connection.scalars(text("SELECT name FROM sim_datastores")))
    problems.extend(doubled_posts(slack))
    for assignment in assignments:
        if granted[assignment] != 1:
            problems.append(f"role assignment {assignment} has {granted[assignment]} grant rows")
    for request_id, row in rows.items():
        if row.status != "succeeded":
            problems.append(f"#{request_id} ({row.action}) ended {row.status}: {row.error}")
        if row.action == "access":
            name = assignment_name("demo", request_id)
            if assignments[name] != 1 or granted[name] != 1:
                problems.append(
                    f"#{request_id}: {assignments[name]} role assignments, {granted[name]} grants"
                )
        elif row.action == "job" and jobs[job_name("demo", request_id)] != 1:
            problems.append(f"#{request_id}: {jobs[job_name('demo', request_id)]} jobs in Azure")
        elif isinstance(row.payload, DatastorePayload) and datastores[row.payload.name] != 1:
            problems.append(f"#{request_id}: datastore {row.payload.name} missing")
        ts = card_ts(slack, request_id)
        if ts is None and not announced:
            continue
        outcomes = [
            m
            for m in slack.messages_in(CHANNEL)
            if ts is not None
            and m.thread_ts == ts
            and any(word in m.text for word in (" done", "failed", "submitted on"))
        ]
        if len(outcomes) != 1:
            with engine.connect() as connection:
                queued = connection.execute(
                    text(
                        "SELECT kind, status, payload || ' ' || coalesce(last_error, '') || ' ' || coalesce(claimed_until::text, '-') || ' next ' || next_attempt_at::text || ' now ' || now()::text FROM outbox"
                    )
                ).all()
            about = [
                (kind, status, str(payload)[-200:])
                for kind, status, payload in queued
                if f'"request_id": {request_id}' in str(payload)
                or f"'request_id': {request_id}" in str(payload)
            ]
            thread = [m.text[:60] for m in slack.messages_in(CHANNEL) if m.thread_ts == ts]
            problems.append(
                f"#{request_id}: {len(outcomes)} outcome messages in its thread "
                f"(thread: {thread}; outbox: {about})"
            )
    return problems


def outbox_drained(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.scalar(text("SELECT count(*) FROM outbox WHERE status = 'pending'"))
    return waiting == 0


def doubled_posts(slack: FakeSlack) -> list[str]:
    """Every outbox post carries its (row, step) as metadata: none may show twice."""
    shown = Counter(
        (m.metadata["event_payload"]["outbox_id"], m.metadata["event_payload"]["step"])
        for m in slack.all_messages()
        if m.metadata is not None
    )
    return [f"outbox post {tag} shows {n} times" for tag, n in shown.items() if n > 1]


def kill_round(
    bot: ServedBot,
    engine: Engine,
    user_id: str,
    name: str,
    n: int,
    rng: random.Random,
    *,
    worker_only: bool,
    recovery_timeout: float = 120,
) -> RoundResult:
    """Approve three requests, SIGKILL mid-way, restart, wait for recovery, check."""
    ids = ask_and_approve(bot, engine, user_id, name, n)
    time.sleep(rng.uniform(0, bot.latency))
    in_flight = len(ids) - _ended(engine, ids)
    if worker_only:
        bot.kill_worker()
    else:
        bot.kill_all()
        bot.start()
    started = time.monotonic()
    wait(lambda: all_final(engine, ids), recovery_timeout, f"requests {ids} to end")
    result = RoundResult(
        requests=len(ids), in_flight_at_kill=in_flight, recovered_in=time.monotonic() - started
    )
    # Outcome messages are delivered after the state change; one the killed process had
    # claimed waits for its claim to lapse (30 s): give the outbox that long.
    deadline = time.monotonic() + 45
    while True:
        result.problems = check_promises(engine, bot.slack, ids)
        if not result.problems or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def run_now_round(
    bot: ServedBot,
    engine: Engine,
    user_id: str,
    n: int,
    rng: random.Random,
    *,
    recovery_timeout: float = 120,
) -> RoundResult:
    """Commands policy runs at once, so the request is opened and Azure called inside the
    command's own handling: a job from `user_id` (who holds a grant on the cluster) and a
    datastore the lead registers. SIGKILL mid-way, restart; the commands are handled again
    (their inbox leases ran out) and each must still have opened one request, with one
    effect in the workspace, and every answer its sender got must name that request."""
    before = _max_request_id(engine)
    answers_before = len(bot.slack.response_posts())
    job = (
        "job submit --compute gpu-cluster --environment azureml:AzureML-sklearn-1.5@latest "
        f'--command "python train.py --at-once {n}"'
    )
    assert bot.command(user_id, job) == 200
    store = f"datastore register atonce{n} --kind blob --account chaosacct --container now{n}"
    assert bot.command(LEAD, store) == 200
    # Each command makes one workspace call of `latency` seconds: a kill within that span
    # lands while both are handled, before or after the call's effect. (Up to three times
    # the latency, until 2026-12-05, most kills landed after both were done.)
    time.sleep(rng.uniform(0, bot.latency))
    in_flight = len(unsettled_inbox(engine))
    bot.kill_all()
    bot.start()
    started = time.monotonic()
    # Settled: nothing left to claim or running, so any second handling has happened.
    wait(lambda: not unsettled_inbox(engine), recovery_timeout, "the inbox to settle")
    ids = wait(
        lambda: (found := request_ids_after(engine, before)) and all_final(engine, found) and found,
        recovery_timeout,
        "the requests the commands opened to end",
    )
    result = RoundResult(
        requests=len(ids), in_flight_at_kill=in_flight, recovered_in=time.monotonic() - started
    )
    if len(ids) != 2:
        result.problems.append(f"two commands opened {len(ids)} requests: {ids}")
    answers = bot.slack.response_posts()[answers_before:]
    promised: dict[int, str] = {}  # requests whose sender was told "you will hear the outcome"
    for request_id in ids:
        with engine.connect() as connection:
            requester = connection.scalar(
                select(RequestRow.requester).where(RequestRow.id == request_id)
            )
        sender = LEAD if requester == "lead" else user_id
        mine = [a.text for a in answers if a.user == sender]
        if not mine:
            result.problems.append(f"#{request_id}: its sender got no answer")
        elif not all(re.search(rf"#{request_id}\b|amlbot-{request_id}-", text_) for text_ in mine):
            result.problems.append(f"#{request_id}: an answer names another request: {mine}")
        elif all("is being carried out" in text_ for text_ in mine):
            promised[request_id] = sender
    deadline = time.monotonic() + 45
    while True:
        problems = check_promises(engine, bot.slack, ids, announced=False)
        for request_id, sender in promised.items():
            told = [
                m.all_text
                for m in bot.slack.messages_in(sender)
                if re.search(rf"#{request_id}\b|amlbot-{request_id}-", m.all_text)
            ]
            if len(told) != 1:
                problems.append(
                    f"#{request_id}: its sender, promised the outcome, was told it "
                    f"{len(told)} times: {told}"
                )
        if not problems or time.monotonic() > deadline:
            result.problems += problems
            return result
        time.sleep(0.25)


def unsettled_inbox(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.scalars(text("SELECT id FROM inbox WHERE status IN ('pending', 'running')"))
        )


def request_ids_after(engine: Engine, after: int) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                select(RequestRow.id).where(RequestRow.id > after).order_by(RequestRow.id)
            )
        )


def held_post_round(bot: ServedBot, engine: Engine, user_id: str, name: str) -> RoundResult:
    """The narrowest window: Slack has shown a post and holds its answer; the whole server
    is killed before it hears. The restarted one must find the post, not repeat it."""
    before = _max_request_id(engine)
    assert bot.command(user_id, 'access request gpu-cluster --for 2h --reason "chaos"') == 200
    (request_id,) = wait(
        lambda: request_ids_from(engine, name, after=before), 90, f"the request of {name}"
    )
    ts = wait(lambda: card_ts(bot.slack, request_id), 30, f"the card of #{request_id}")
    posts_before = len(bot.slack.calls("chat.postMessage"))
    bot.slack.lose_answer("chat.postMessage", delay=30, status=None)
    assert bot.approve(request_id, ts) == 200
    wait(
        lambda: len(bot.slack.calls("chat.postMessage")) > posts_before,
        90,
        "a post whose answer Slack holds",
    )
    bot.kill_all()
    bot.start()
    started = time.monotonic()
    wait(lambda: all_final(engine, [request_id]), 120, f"#{request_id} to end")
    # The killed process's claim on the message lapses after 30 s; then it is retried.
    wait(lambda: outbox_drained(engine), 120, "every outbox message to be sent")
    return RoundResult(
        requests=1,
        in_flight_at_kill=1,
        recovered_in=time.monotonic() - started,
        problems=check_promises(engine, bot.slack, [request_id]),
    )


def revoke_round(
    bot: ServedBot,
    engine: Engine,
    user_id: str,
    rng: random.Random,
    *,
    recovery_timeout: float = 120,
) -> RoundResult:
    """The holder revokes their active grants; SIGKILL mid-revocation (every delete in the
    workspace takes `latency`), restart, and check the access is gone exactly once."""
    with engine.connect() as connection:
        grants = list(
            connection.execute(
                select(GrantRow.id, GrantRow.assignment_name, GrantRow.grantee).where(
                    GrantRow.status == "active"
                )
            )
        )
    mine = [g for g in grants if g.grantee == _name_of(user_id)]
    for grant in mine:
        assert bot.command(user_id, f"access revoke {grant.id}") == 200
    time.sleep(rng.uniform(0, bot.latency * 1.5))
    bot.kill_all()
    bot.start()
    started = time.monotonic()
    ids = [g.id for g in mine]

    def revoked() -> bool:
        with engine.connect() as connection:
            statuses = connection.scalars(select(GrantRow.status).where(GrantRow.id.in_(ids))).all()
        return all(status == "revoked" for status in statuses)

    wait(revoked, recovery_timeout, f"grants {ids} to be revoked")
    result = RoundResult(requests=len(ids), recovered_in=time.monotonic() - started)
    with engine.connect() as connection:
        left = set(connection.scalars(text("SELECT assignment_name FROM sim_role_assignments")))
    for grant in mine:
        if grant.assignment_name in left:
            result.problems.append(f"grant {grant.id}: revoked, but its assignment is in Azure")
    deadline = time.monotonic() + 15
    while True:
        told = [m for m in bot.slack.messages_in(user_id) if "was revoked" in m.text]
        counts = Counter(g.id for g in mine for m in told if f"#{g.id})" in m.text)
        missing = [g.id for g in mine if counts[g.id] != 1]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    result.problems += [f"grant {gid}: told {counts[gid]} times" for gid in missing]
    return result


def _name_of(user_id: str) -> str:
    return f"ds{int(user_id.removeprefix('U0DS'))}"


COMMANDS = ["help", "compute list", "request list", "access list", "job list --mine"]


def rolling_deploy(
    old: ServedBot, new: ServedBot, user_ids: list[str], commands: int
) -> tuple[list[str], Counter[str]]:
    """A burst of `commands` slash commands, 10 at a time, while the old server gets
    SIGTERM; a load balancer's way: the old one while it takes connections, else the new.
    Returns each command's response_url and how often each was answered."""
    slack = old.slack
    sent: list[str] = []
    deployed = threading.Event()

    def send(n: int) -> None:
        user_id = user_ids[n % len(user_ids)]
        reply_url = slack.response_url(CHANNEL, user_id)
        body = slash_command_body(
            COMMANDS[n % len(COMMANDS)],
            user_id=user_id,
            channel_id=CHANNEL,
            response_url=reply_url,
        )
        sent.append(reply_url)
        for bot in (old, new):
            if bot is old and deployed.is_set():
                continue
            try:
                status = post_signed(bot.url, "/slack/events", body, secret=SIGNING_SECRET).status
            except OSError:
                continue
            if status == 200:
                return

    def deploy() -> None:
        time.sleep(0.5)
        old.terminate()
        deployed.set()

    deployer = threading.Thread(target=deploy)
    deployer.start()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(send, range(commands)))
    deployer.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answered = Counter(post.url for post in slack.response_posts())
        if all(answered[url] for url in sent):
            break
        time.sleep(0.2)
    time.sleep(2)  # anything doubled would arrive by now
    return sent, Counter(post.url for post in slack.response_posts())
