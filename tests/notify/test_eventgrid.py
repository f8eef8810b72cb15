"""The Event Grid webhook, driven over HTTP with Azure's own payloads: the validation
handshake, the shared secret, and job events that are announced once (the poll and later
deliveries never repeat them, an older one never follows a newer one)."""

from __future__ import annotations

import http.client
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from approvals import inbox
from approvals.following.eventgrid import RUN_COMPLETED, run_event, workspace_for_topic
from approvals.following.jobs import follow_jobs
from approvals.idle.spend import idle_spend_between
from approvals.tables import InboxRow, JobRow
from bot.eventgrid_webhook import EVENTGRID_HANDLER, eventgrid_routes, job_events_handler
from bot.wiring import Core
from tests.fakes.slack_signing import post_signed
from tests.notify.conftest import ALICE, ENV, EVENTGRID_SECRET, NotifyBot, job_notices
from tests.slack.conftest import AppServer
from workspaces.clock import ManualClock
from workspaces.types import JobSpec, JobStatus

FIXTURES = Path(__file__).with_name("fixtures") / "eventgrid"
RUNNING_EVENT = "run_status_changed.sdk_net_test.eventgrid.json"
COMPLETED_EVENT = "run_completed.spec_example.eventgrid.json"
VALIDATION: dict[str, Any] = {
    "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
    "topic": "/subscriptions/00000000-0000-4000-8000-000000000000",
    "subject": "",
    "data": {
        "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
        "validationUrl": "https://rp-eastus2.eventgrid.azure.net/eventsubscriptions/x/validate",
    },
    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
    "eventTime": "2026-01-05T09:00:00.000Z",
    "metadataVersion": "1",
    "dataVersion": "1",
}


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


def for_demo(core: Core, event: dict[str, Any]) -> dict[str, Any]:
    """The event as the demo workspace would send it: only the topic is changed."""
    return {**event, "topic": core.config.workspaces["demo"].azure.workspace_scope}


def deliver(
    url: str,
    events: Any,
    code: str | None = EVENTGRID_SECRET,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    query = f"?code={code}" if code is not None else ""
    response = post_signed(
        url,
        f"/azure/events{query}",
        json.dumps(events),
        headers={
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            **(headers or {}),
        },
    )
    return response.status, json.loads(response.body) if response.body else None


def follow_azure_job(core: Core, name: str, person: str = "alice") -> None:
    """A job someone started outside the bot (Azure ML names AutoML runs like this),
    which `person` watches."""
    core.backends("demo").submit_job(
        JobSpec(name=name, compute="cpu-cluster", environment=ENV, command="python automl.py")
    )
    assert core.service.handle_text(person, f"job watch {name}").ok


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("run_status_changed.spec_example.eventgrid.json", JobStatus.FAILED),  # "failed"
        ("run_status_changed.sdk_net_test.eventgrid.json", JobStatus.RUNNING),
        ("run_status_changed.captured_data_pipeline.eventgrid.json", JobStatus.RUNNING),
        (COMPLETED_EVENT, JobStatus.COMPLETED),
    ],
)
def test_each_recorded_payload_gives_the_job_name_and_a_normalised_status(
    name: str, status: JobStatus
) -> None:
    event = fixture(name)
    parsed = run_event(event)
    assert parsed is not None
    assert (parsed.job_name, parsed.status) == (event["data"]["runId"], status)


def test_the_topic_names_the_workspace(core: Core) -> None:
    scope = core.config.workspaces["demo"].azure.workspace_scope
    assert workspace_for_topic(core.config, scope.upper()) is not None
    assert workspace_for_topic(core.config, fixture(RUNNING_EVENT)["topic"]) is None


def test_the_subscription_validation_handshake_echoes_the_code(notify_bot: NotifyBot) -> None:
    status, body = deliver(notify_bot.url, [VALIDATION])
    assert (status, body) == (200, {"validationResponse": VALIDATION["data"]["validationCode"]})


def test_a_delivery_without_the_shared_secret_is_refused(notify_bot: NotifyBot) -> None:
    assert deliver(notify_bot.url, [VALIDATION], code=None)[0] == 401
    assert deliver(notify_bot.url, [VALIDATION], code="guess")[0] == 401


def test_the_secret_may_come_as_a_delivery_header_instead(notify_bot: NotifyBot) -> None:
    headers = {"X-Amlbot-Secret": EVENTGRID_SECRET}
    assert deliver(notify_bot.url, [VALIDATION], code=None, headers=headers)[0] == 200
    assert (
        deliver(notify_bot.url, [VALIDATION], code=None, headers={"X-Amlbot-Secret": "x"})[0] == 401
    )


def test_the_cloudevents_handshake_allows_event_grid(notify_bot: NotifyBot) -> None:
    target = urlsplit(notify_bot.url)
    connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
    try:
        connection.request(
            "OPTIONS",
            f"/azure/events?code={EVENTGRID_SECRET}",
            headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
        )
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("WebHook-Allowed-Origin") == "eventgrid.azure.net"
    finally:
        connection.close()


def test_without_a_configured_secret_the_webhook_is_off(core: Core) -> None:
    with AppServer(Starlette(routes=eventgrid_routes(core, secret=None))) as server:
        status, body = deliver(server.url, [VALIDATION])
    assert status == 503 and "AMLBOT_EVENTGRID_SECRET" in body["error"]


def test_a_body_that_is_not_an_event_is_a_bad_request(notify_bot: NotifyBot) -> None:
    assert deliver(notify_bot.url, "hello")[0] == 400
    assert deliver(notify_bot.url, [])[0] == 400


def test_a_status_change_is_announced_once_and_the_poll_does_not_repeat_it(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    event = for_demo(core, fixture(RUNNING_EVENT))
    name = event["data"]["runId"]
    follow_azure_job(core, name)
    clock.advance(timedelta(seconds=40))  # the simulated job is running now

    assert deliver(notify_bot.url, [event]) == (200, {"accepted": 1})
    assert deliver(notify_bot.url, [event]) == (200, {"accepted": 1})  # at least once
    notify_bot.settle()
    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)
    clock.advance(timedelta(seconds=30))
    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    assert job_notices(core, name) == [("alice", f"Job `{name}` is running on `cpu-cluster`.")]
    notify_bot.deliver_until_quiet()
    shown = [m for m in notify_bot.slack.messages_in(ALICE) if name in m.text]
    assert len(shown) == 1


def test_run_completed_brings_azures_details_and_a_late_older_event_is_ignored(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    completed = for_demo(core, fixture(COMPLETED_EVENT))
    name = completed["data"]["runId"]
    follow_azure_job(core, name)
    clock.advance(timedelta(minutes=5))
    late_running = {
        **completed,
        "id": "late",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "data": {**completed["data"], "runStatus": "Running"},
    }

    assert completed["eventType"] == RUN_COMPLETED
    assert deliver(notify_bot.url, [completed, late_running]) == (200, {"accepted": 2})
    notify_bot.settle()
    follow_jobs(core, clock.now(), idle_spend=idle_spend_between)

    ((_, first_line),) = job_notices(core, name)
    assert first_line.startswith(f"Job `{name}` completed on `cpu-cluster` (ran ")
    with core.store.transaction() as session:
        job = session.query(JobRow).filter_by(name=name).one()
        assert (job.status, job.following) == ("Completed", False)


def test_an_event_from_a_workspace_amlbot_does_not_govern_is_ignored(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    event = fixture(RUNNING_EVENT)  # topic: someone else's workspace
    follow_azure_job(core, event["data"]["runId"])
    clock.advance(timedelta(seconds=40))
    assert deliver(notify_bot.url, [event]) == (200, {"accepted": 1})
    notify_bot.settle()
    assert job_notices(core, event["data"]["runId"]) == []


def test_a_cloudevents_delivery_is_understood_too(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    recorded = fixture(RUNNING_EVENT)
    name = recorded["data"]["runId"]
    follow_azure_job(core, name)
    clock.advance(timedelta(seconds=40))
    cloud_event = {
        "specversion": "1.0",
        "id": recorded["id"],
        "type": recorded["eventType"],
        "source": core.config.workspaces["demo"].azure.workspace_scope,
        "subject": recorded["subject"],
        "time": recorded["eventTime"],
        "data": recorded["data"],
    }
    assert deliver(notify_bot.url, cloud_event) == (200, {"accepted": 1})
    notify_bot.settle()
    assert job_notices(core, name) == [("alice", f"Job `{name}` is running on `cpu-cluster`.")]


def test_a_job_nobody_watches_any_more_is_not_announced(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    event = for_demo(core, fixture(RUNNING_EVENT))
    name = event["data"]["runId"]
    follow_azure_job(core, name)
    assert core.service.handle_text("alice", f"job unwatch {name}").ok
    clock.advance(timedelta(seconds=40))
    deliver(notify_bot.url, [event])
    notify_bot.settle()
    assert job_notices(core, name) == []


def test_events_of_other_types_in_a_batch_are_accepted_and_ignored(
    notify_bot: NotifyBot, core: Core
) -> None:
    other = {
        **fixture(RUNNING_EVENT),
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    }
    assert deliver(notify_bot.url, [for_demo(core, other)]) == (200, {"accepted": 1})
    notify_bot.settle()
    assert job_notices(core, other["data"]["runId"]) == []


def test_a_delivery_is_kept_before_it_is_answered_and_recorded_once_by_a_worker(
    notify_bot: NotifyBot, core: Core, clock: ManualClock
) -> None:
    """The 200 means the delivery is in the inbox; the worker's handler may run twice (a
    worker died after recording it) and still announces once."""
    notify_bot.inbox_worker.stop(grace=1)  # nothing handles the inbox in this test
    event = for_demo(core, fixture(RUNNING_EVENT))
    name = event["data"]["runId"]
    follow_azure_job(core, name)
    clock.advance(timedelta(seconds=40))

    assert deliver(notify_bot.url, [event], code="wrong")[0] == 401
    assert deliver(notify_bot.url, [event]) == (200, {"accepted": 1})
    with core.store.transaction() as session:
        [kept] = session.scalars(select(InboxRow)).all()
        assert (kept.handler, kept.payload) == (EVENTGRID_HANDLER, {"events": [event]})
    assert job_notices(core, name) == []

    wakes: list[None] = []
    record = job_events_handler(core, lambda: wakes.append(None))
    [item] = inbox.claim(core.store, "test-worker", clock.now())
    for _ in range(2):
        record(item)

    assert job_notices(core, name) == [("alice", f"Job `{name}` is running on `cpu-cluster`.")]
    notify_bot.deliver_until_quiet()
    assert len([m for m in notify_bot.slack.messages_in(ALICE) if name in m.text]) == 1
    assert len(wakes) == 1  # the repeat announced nothing


def test_a_delivery_the_inbox_cannot_keep_is_refused_so_event_grid_delivers_again(
    core: Core, clock: ManualClock
) -> None:
    event = for_demo(core, fixture(RUNNING_EVENT))
    with AppServer(Starlette(routes=eventgrid_routes(core, secret=EVENTGRID_SECRET))) as server:
        core.store.engine.dispose()
        with core.store.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE inbox")
        status, _ = deliver(server.url, [event])
    assert status == 503
