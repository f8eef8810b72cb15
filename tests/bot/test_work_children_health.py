"""`amlbot serve` on PostgreSQL runs its workers as `amlbot work` children: each answers
`/healthz`, `/readyz` and `/metrics` on a port of its own, and `serve`'s own `/readyz`
says whether every child runs and claims (a dead one turns it 503, naming it, until it is
replaced; a child just started has a minute to answer), while `serve`'s `/healthz` stays
200 throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import postgres_schema_url
from tests.fakes.serving import free_port
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import (
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    USERS,
    scrape,
    start_serve_http,
    wait_for,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
]


@dataclass
class Served:
    url: str
    child_ports: list[int]
    process: subprocess.Popen[str]


def answer(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return int(refused.code), json.loads(refused.read() or b"{}")
    except OSError:
        return 0, {}


def child_pids(parent: int) -> dict[int, list[str]]:
    """The `amlbot work` children of `parent`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().decode().rstrip("\0").split("\0")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent and "work" in command:
            found[int(entry.name)] = command
    return found


@pytest.fixture
def served() -> Iterator[Served]:
    for database_url in postgres_schema_url():
        with FakeSlack(token=BOT_TOKEN, channels={CHANNEL}, users=USERS) as slack:
            port, first_child = free_port(), free_port()
            process = start_serve_http(
                port,
                first_child,
                env={
                    "SLACK_BOT_TOKEN": BOT_TOKEN,
                    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "SLACK_API_URL": slack.base_url,
                    "AMLBOT_DATABASE_URL": database_url,
                    "AMLBOT_WORK_PROCESSES": "1",
                },
            )
            try:
                yield Served(f"http://127.0.0.1:{port}", [first_child], process)
            finally:
                process.terminate()
                _, errors = process.communicate(timeout=30)
                assert "Traceback" not in errors, errors


def test_each_child_answers_on_its_own_port_and_serve_is_ready_when_they_claim(
    served: Served,
) -> None:
    [child_port] = served.child_ports
    child = f"http://127.0.0.1:{child_port}"
    wait_for(lambda: answer(f"{child}/readyz")[0] == 200 or None, timeout=60, what="child ready")

    _, body = wait_for(
        lambda: (lambda got: got if got[0] == 200 else None)(answer(f"{served.url}/readyz")),
        timeout=60,
        what="serve ready",
    )
    assert body["work_processes"] == "ok"
    [(pid, command)] = child_pids(served.process.pid).items()
    assert command[-4:] == ["--health-port", str(child_port), "--health-host", "127.0.0.1"]
    # By default a child takes only the CPU the edge leaves (AMLBOT_WORK_PRIORITY=idle).
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    # The child's own metrics: what its worker did, which the parent cannot count.
    samples = wait_for(
        lambda: (lambda s: s if s.get("amlbot_sweep_duration_seconds_count") else None)(
            scrape(f"{child}/metrics")
        ),
        timeout=60,
        what="a sweep round in the child's metrics",
    )
    assert samples["amlbot_sweep_last_success_timestamp_seconds"] > 0


def test_a_dead_child_makes_serve_unready_until_its_replacement_claims(
    served: Served,
) -> None:
    wait_for(lambda: answer(f"{served.url}/readyz")[0] == 200 or None, timeout=60, what="ready")
    [pid] = child_pids(served.process.pid)

    os.kill(pid, signal.SIGKILL)

    _, body = wait_for(
        lambda: (lambda got: got if got[0] == 503 else None)(answer(f"{served.url}/readyz")),
        timeout=10,
        what="serve unready",
    )
    assert body["work_processes"].startswith("work process 1 ")
    assert answer(f"{served.url}/healthz")[0] == 200  # alive: nothing to restart
    wait_for(
        lambda: answer(f"{served.url}/readyz")[0] == 200 or None,
        timeout=60,
        what="ready again with the replacement",
    )
    assert pid not in child_pids(served.process.pid)
