"""The core refuses a secret however the command reached it: typed, or already built by an
edge (a button, a modal), and the workflow refuses one in any free text it is handed.
Only the refusal is audited, never the text."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from approvals.payloads import ComputePayload
from approvals.states import RequestStatus
from approvals.tables import AuditRow, OutboxRow, RequestRow
from bot.wiring import Core
from commands import models as m
from shared.errors import SecretRefusedError

ACCOUNT_KEY = "Zm9vYmFy" * 10 + "Zm9vYm" + "=="  # 86 base64 characters and "=="
SLACK_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STOP_C1 = ComputePayload(operation="stop_instance", compute="c1")


def ask_for_datastore(core: Core) -> int:
    reply = core.service.handle_text(
        "alice",
        "/aml datastore register trainingdata --kind blob --account contosodata "
        "--container training",
    )
    assert reply.ok and reply.request_id is not None, reply.text
    return reply.request_id


def refusals(core: Core) -> list[AuditRow]:
    with core.store.transaction() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.action == "command.refused"))
        return [row for row in rows if row.outcome == "secret"]


def everything_stored(core: Core) -> str:
    with core.store.transaction() as session:
        rows = [
            *session.scalars(select(RequestRow)),
            *session.scalars(select(AuditRow)),
            *session.scalars(select(OutboxRow)),
        ]
        return "\n".join(repr(vars(row)) for row in rows)


def test_a_deny_built_by_an_edge_with_a_key_as_reason_is_refused_and_audited_without_it(
    core: Core,
) -> None:
    request_id = ask_for_datastore(core)
    reply = core.service.run("bob", m.Deny(request_id=request_id, reason=ACCOUNT_KEY))
    assert not reply.ok
    assert "a storage account key" in reply.text and ACCOUNT_KEY not in reply.text
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None and row.status == RequestStatus.PENDING
        assert row.deny_reason is None
    [refusal] = refusals(core)
    assert refusal.actor == "bob" and refusal.detail == {"detail_kind": "a storage account key"}
    assert ACCOUNT_KEY not in everything_stored(core)


def test_a_job_built_by_an_edge_with_a_secret_inside_an_input_is_refused(core: Core) -> None:
    command = m.JobSubmit(
        compute="cpu-cluster",
        environment="AzureML-sklearn-1.5@latest",
        command="python train.py",
        inputs={"data": f"azureml://datastores/workspaceblobstore/paths/{SLACK_TOKEN}"},
    )
    reply = core.service.run("alice", command)
    assert not reply.ok and "a Slack token" in reply.text
    assert len(refusals(core)) == 1
    with core.store.transaction() as session:
        assert session.scalars(select(RequestRow)).first() is None
    assert SLACK_TOKEN not in everything_stored(core)


def test_the_workflow_refuses_a_key_as_a_deny_reason_whoever_calls_it(core: Core) -> None:
    request_id = ask_for_datastore(core)
    with pytest.raises(SecretRefusedError) as caught:
        core.service.workflow.deny(request_id, "bob", f"see {ACCOUNT_KEY}")
    assert ACCOUNT_KEY not in caught.value.render()
    with core.store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None and row.status == RequestStatus.PENDING
    assert len(refusals(core)) == 1
    assert ACCOUNT_KEY not in everything_stored(core)


def test_the_workflow_refuses_a_secret_in_a_new_request_whoever_calls_it(core: Core) -> None:
    ws = core.config.workspaces["demo"]
    workflow = core.service.workflow
    with pytest.raises(SecretRefusedError):
        workflow.open_request(ws, "alice", STOP_C1, "stop c1", f"why: {SLACK_TOKEN}", 1)
    with pytest.raises(SecretRefusedError):
        workflow.run_now(
            ws,
            "bob",
            ComputePayload(operation="stop_instance", compute="c1", description=SLACK_TOKEN),
            "stop c1",
            "lead",
        )
    assert len(refusals(core)) == 2
    assert SLACK_TOKEN not in everything_stored(core)
