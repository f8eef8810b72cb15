"""Following hundreds of jobs in one workspace: every transition is announced exactly once
within a few polls, whatever the number of jobs, and a poll that finds nothing new writes
nothing. Against the fake ARM, which pages its job list 50 at a time with `nextLink`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml
from sqlalchemy import event, select

from approvals.config import DEMO_CONFIG_PATH, AppConfig
from approvals.following.jobs import MAX_SINGLE_LOOKUPS, follow_jobs
from approvals.idle.spend import idle_spend_between
from approvals.tables import JobRow, JobWatcherRow, OutboxRow, RequestRow, RequestStatus
from bot.wiring import Core
from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure import make_azure_workspace
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates

OURS = 320  # more than the 200 a listing used to stop at
FOREIGN = 25  # watched jobs of someone else's: not in the bot's tagged list
BOT_TAGS = {"amlbot": "true", "amlbot-requester": "alice"}


@pytest.fixture
def azure_core(
    fake: FakeAzure, make_core: Callable[..., Core], sqlite_url: str
) -> tuple[Core, AzureCoordinates]:
    raw = yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["workspaces"]["demo"]["backend"] = "azure"
    raw["cloud"] = fake.cloud_config().model_dump()
    config = AppConfig.model_validate(raw)
    coords = config.workspaces["demo"].azure
    fake.add_workspace(coords.subscription_id, coords.resource_group, coords.workspace_name)
    fake.add_cluster(coords, "gpu", min_nodes=0, max_nodes=4, current_nodes=4)
    core = make_core(config, sqlite_url)
    backend = make_azure_workspace(
        config.workspaces["demo"].azure_settings(),
        config.cloud,
        FakeCredential(),
        **fake.backend_options(),
    )
    core.backends.install("demo", backend)
    return core, coords


def follow_in_db(core: Core, name: str, now: datetime, *, ours: bool) -> None:
    with core.store.transaction() as session:
        request_id = None
        if ours:
            request = RequestRow(
                workspace="demo",
                action="job.submit",
                requester="alice",
                payload={},
                summary=f"job {name}",
                status=RequestStatus.SUCCEEDED,
                created_at=now,
            )
            session.add(request)
            session.flush()
            request_id = request.id
        job = JobRow(
            workspace="demo",
            name=name,
            request_id=request_id,
            requester="alice" if ours else "someone-else",
            compute="gpu",
            status="Queued",
            submitted_at=now,
            updated_at=now,
        )
        session.add(job)
        session.flush()
        if not ours:
            session.add(JobWatcherRow(job_id=job.id, person="carol"))


def told(core: Core) -> list[str]:
    with core.store.transaction() as session:
        return [str(text) for text in session.scalars(select(OutboxRow.payload["text"]))]


def times_told(texts: list[str], names: list[str], what: str) -> dict[str, int]:
    """How many messages say `Job `NAME` WHAT`, for each name."""
    return {name: sum(1 for t in texts if t.startswith(f"Job `{name}` {what}")) for name in names}


@pytest.fixture
def writes(azure_core: tuple[Core, AzureCoordinates]) -> Iterator[list[str]]:
    """Every INSERT, UPDATE or DELETE the store runs."""
    core, _ = azure_core
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            seen.append(statement)

    event.listen(core.store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(core.store.engine, "before_cursor_execute", record)


def test_hundreds_of_followed_jobs_each_have_every_transition_announced_once(
    azure_core: tuple[Core, AzureCoordinates],
    fake: FakeAzure,
    clock: ManualClock,
    writes: list[str],
) -> None:
    core, coords = azure_core
    now = clock.now()
    ours = [f"amlbot-demo-{n:03d}" for n in range(1, OURS + 1)]
    foreign = [f"notebook-run-{n:02d}" for n in range(1, FOREIGN + 1)]
    for name in ours:
        fake.add_job(coords, name, status="Running", tags=BOT_TAGS)
        follow_in_db(core, name, now, ours=True)
    for name in foreign:
        fake.add_job(coords, name, status="Running")
        follow_in_db(core, name, now, ours=False)

    polls_to_tell_all_running = 0
    while polls_to_tell_all_running < 5:
        polls_to_tell_all_running += 1
        follow_jobs(core, now, idle_spend=idle_spend_between)
        if all(times_told(told(core), [*ours, *foreign], "is running").values()):
            break
    # The bot's own come from the paged list at once; the others, looked up a bounded
    # number per poll in turn, within ceil(25 / 10) = 3 polls.
    assert polls_to_tell_all_running == -(-FOREIGN // MAX_SINGLE_LOOKUPS)
    assert set(times_told(told(core), [*ours, *foreign], "is running on `gpu`").values()) == {1}

    ended = ours[250:260] + foreign[:3]  # job #251 among them
    for name in ended:
        fake.set_job_status(coords, name, "Completed")
    for _ in range(3):
        follow_jobs(core, now, idle_spend=idle_spend_between)
    texts = told(core)
    assert set(times_told(texts, ended, "completed").values()) == {1}
    assert sum(1 for text in texts if " completed" in text) == len(ended)

    fake.calls.clear()
    writes.clear()
    assert follow_jobs(core, now, idle_spend=idle_spend_between) == 0
    assert writes == []  # nothing changed, nothing written
    lists = fake.calls_to("GET", "/workspaces/[^/]+/jobs$")
    assert len(lists) == -(-OURS // 50)  # every page of the tagged list, once
    assert all(call.query.get("tag") == "amlbot" for call in lists)
    lookups = [c for c in fake.calls_to("GET", "/jobs/[^/]+$")]
    assert len(lookups) == MAX_SINGLE_LOOKUPS
    assert set(times_told(told(core), [*ours, *foreign], "is running").values()) == {1}
