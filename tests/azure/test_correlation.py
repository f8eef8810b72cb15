"""One correlation id per inbound item, followed through: a slash command, a lead's click on
the card, the Azure calls it makes and the replies it causes, through the real Bolt app,
the fake Slack and the fake Azure Resource Manager. The same id is on the log lines (the
Azure ones with Azure's `x-ms-request-id`), the outbox rows and the audit events; and no
log line of the whole scenario holds a token, the signing secret or a storage key."""

from __future__ import annotations

import io
from datetime import timedelta

from sqlalchemy import select

from approvals.scheduled import run_due
from approvals.tables import AuditRow, InboxRow, OutboxRow
from tests.azure import test_slack_on_azure as on_azure
from tests.azure.test_slack_on_azure import ALICE_OBJECT_ID, approve, ask_for_access
from tests.fakes.azure_arm import FakeAzure
from tests.json_logs import entries
from tests.slack.conftest import ALICE, BOT_TOKEN, SIGNING_SECRET, SlackHarness, wait_for
from workspaces.azure.backend import AzureWorkspace
from workspaces.clock import ManualClock
from workspaces.types import AzureCoordinates, DatastoreKind, DatastoreSpec

STORAGE_KEY = "c3RvcmFnZS1rZXktb2YtY29udG9zb3NhbGVz" + "Q" * 50 + "AbCdEfGhIj=="
JOB = (
    "job submit --compute gpu-cluster --environment azureml:AzureML-sklearn-1.5@latest "
    '--command "python train.py"'
)

# The Slack-on-Azure scenario's fixtures: the demo configuration on the fake Azure, the bot
# running against the fake Slack.
azure_coords = on_azure.azure_coords
azure_core = on_azure.azure_core
harness = on_azure.harness


def test_a_clicks_id_is_on_its_decision_its_azure_calls_and_its_replies(
    harness: SlackHarness, fake: FakeAzure, json_logs: io.StringIO
) -> None:
    request_id = ask_for_access(harness)
    approve(harness, request_id)
    harness.dm_to(ALICE, "alice has access to `gpu-cluster`")

    with harness.core.store.transaction() as session:
        audit = list(session.scalars(select(AuditRow).order_by(AuditRow.id)))
        outbox = list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))
        keys = set(session.scalars(select(InboxRow.delivery_key)))
    by_action = {row.action: row for row in audit}
    asked = by_action["access.requested"].correlation_id
    clicked = by_action["access.approved"].correlation_id
    # Each is the delivery key of the inbound item that caused it, and they differ.
    assert asked in keys and clicked in keys and asked != clicked
    # The decision and its carrying out in Azure: the click's id.
    assert by_action["access.executed"].correlation_id == clicked
    # The card the command posted, the replies the click caused: each under its cause.
    opened = [row for row in outbox if row.kind == "request.opened"]
    assert [row.correlation_id for row in opened] == [asked]
    told_alice = [
        row
        for row in outbox
        if row.kind == "person.notice" and "has access" in str(row.payload.get("text"))
    ]
    assert told_alice and {row.correlation_id for row in told_alice} == {clicked}

    [grant] = fake.calls_to("PUT", "roleAssignments/")
    logged = entries(json_logs)
    azure_lines = [
        e
        for e in logged
        if e["logger"] == "amlbot.azure" and f"x-ms-request-id {grant.request_id}" in e["message"]
    ]
    assert [e.get("correlation_id") for e in azure_lines] == [clicked]
    assert "Microsoft.Authorization/roleAssignments/write: 20" in azure_lines[0]["message"]
    # The Slack calls delivering the replies the click caused log under the click's id.
    delivering = [
        e
        for e in logged
        if e["logger"].startswith("slack_sdk.web") and "/api/chat.postMessage" in e["message"]
    ]
    assert clicked in {e.get("correlation_id") for e in delivering}


def test_a_whole_scenario_logs_no_token_signing_secret_or_storage_key(
    harness: SlackHarness,
    fake: FakeAzure,
    azure_coords: AzureCoordinates,
    backend: AzureWorkspace,
    clock: ManualClock,
    json_logs: io.StringIO,
) -> None:
    # A storage account key the bot reads from Key Vault for a credential-based datastore.
    fake.key_vault_secrets["sales-key"] = STORAGE_KEY
    backend.register_datastore(
        DatastoreSpec(
            name="sales_raw",
            kind=DatastoreKind.BLOB,
            account="contososales",
            container="raw",
            key_vault_secret="sales-key",
        )
    )
    [put] = fake.calls_to("PUT", "/datastores/sales_raw$")
    assert put.body["properties"]["credentials"]["secrets"]["key"] == STORAGE_KEY
    approve(harness, ask_for_access(harness))
    harness.dm_to(ALICE, "alice has access to `gpu-cluster`")
    harness.command(ALICE, JOB)
    submitted = wait_for(lambda: fake.calls_to("PUT", "/jobs/"), what="the job to be submitted")
    name = submitted[0].path.rsplit("/", 1)[-1]
    fake.end_job(
        azure_coords,
        name,
        "Failed",
        ran_for=timedelta(minutes=1),
        error="ModuleNotFoundError: No module named 'torch'",
        log="Traceback (most recent call last):\nModuleNotFoundError: torch\n",
    )
    clock.advance(timedelta(minutes=5))
    run_due(harness.core, harness.core.service.workflow, clock.now())
    harness.wake_outbox()
    harness.dm_to(ALICE, "failed")

    text = json_logs.getvalue()
    entries(json_logs)  # every line is one JSON object
    used_tokens = {
        call.headers["authorization"].removeprefix("Bearer ")
        for call in fake.calls
        if "authorization" in call.headers
    }
    sas = [query for query in fake.sas_queries()]
    assert used_tokens and sas, "the scenario used no Azure token or no SAS"
    signatures = [part for q in sas for part in q.split("&") if part.startswith("sig=")]
    assert signatures
    for secret in [BOT_TOKEN, SIGNING_SECRET, STORAGE_KEY, *used_tokens, *signatures]:
        assert secret not in text
    # The scenario's logs did reach Azure and were verbose enough to leak, had they leaked.
    assert "amlbot.azure" in text and '"level": "DEBUG"' in text
    assert any(ALICE_OBJECT_ID in call.body.__repr__() for call in fake.calls)
