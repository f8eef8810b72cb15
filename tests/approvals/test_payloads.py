"""A request's payload is its action's model: stored as JSON in the request row, read back as
the model, including rows older versions wrote."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import JSON, Integer, String, column, insert, select, table, update
from sqlalchemy.exc import StatementError

from approvals.actions.base import payload_as, required
from approvals.column_types import UTCDateTime
from approvals.payloads import (
    AccessPayload,
    ComputePayload,
    CostEstimate,
    DatastorePayload,
    DriftPayload,
    JobPayload,
    RequestPayload,
    ReviewPayload,
    RuleFacts,
    load_payload,
    rule_of,
)
from approvals.store import Store
from approvals.tables import RequestRow
from shared.errors import UserError

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# One payload of every action, each with the fields its writers fill in.
EVERY_ACTION: list[RequestPayload] = [
    AccessPayload(
        cluster="gpu-cluster",
        duration_seconds=7200.0,
        until_done=True,
        extends_grant=4,
        estimate=CostEstimate(usd=12.24, explain="2 nodes x 2 h x $3.06", source="retail"),
        rule=RuleFacts(
            name="gpu-short",
            decide="lead",
            headline="needs group `ml-leads`: GPU cluster (policy rule `gpu-short`)",
            approvers="ml-leads",
        ),
        budget_line="$40.00 of $100.00 this month",
        capacity="NCv3 quota 24 cores, 12 free; 1 of 2 nodes free",
    ),
    AccessPayload(cluster="cpu-cluster", duration_seconds=1800.0, emergency=True, review_request=2),
    DatastorePayload(
        name="lake",
        store_kind="blob",
        account="acct",
        container="training",
        description="the shared lake",
    ),
    JobPayload(
        compute="gpu-cluster",
        environment="AzureML-sklearn-1.5@latest",
        command="python train.py --epochs 3",
        code="./src",
        inputs={"data": "azureml://datastores/lake/paths/x"},
        instances=2,
        max_duration_seconds=72000.0,
        experiment="churn",
        name="nightly",
        job_alone=True,
        estimate=CostEstimate(usd=122.4, explain="2 nodes x 20 h x $3.06"),
    ),
    ComputePayload(
        operation="set_idle_time",
        compute="cpu-cluster",
        idle_seconds=120,
        title="Set idle time of cpu-cluster to 2m",
        description="set the idle time before scale-down of cluster `cpu-cluster` to 2m",
    ),
    DriftPayload(
        operation="revoke_assignment",
        finding_id=3,
        kind="stray",
        compute="gpu-cluster",
        assignment_name="a1b2",
        principal="oid-1",
        role="AzureML Compute Operator",
    ),
    ReviewPayload(reviews=1, cluster="cpu-cluster", duration_seconds=1800.0),
]

# requests columns, typed plainly: what an older version's INSERT put in the table.
RAW_REQUESTS = table(
    "requests",
    column("id", Integer),
    column("workspace", String),
    column("action", String),
    column("requester", String),
    column("payload", JSON),
    column("summary", String),
    column("status", String),
    column("approvals_needed", Integer),
    column("created_at", UTCDateTime()),
    column("version", Integer),
)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url)
    yield opened
    opened.engine.dispose()


def add_request(store: Store, payload: RequestPayload) -> int:
    with store.transaction() as session:
        row = RequestRow(
            workspace="demo",
            action=payload.action,
            requester="alice",
            payload=payload,
            summary="a request",
            status="pending",
            approvals_needed=1,
            created_at=NOW,
            version=1,
        )
        session.add(row)
        session.flush()
        return row.id


def insert_raw(store: Store, action: str, payload: dict[str, Any]) -> int:
    """A row as an older version wrote it: the JSON given, exactly, with no `action` key."""
    with store.engine.begin() as connection:
        result = connection.execute(
            insert(RAW_REQUESTS)
            .values(
                workspace="demo",
                action=action,
                requester="alice",
                payload=payload,
                summary="an old request",
                status="pending",
                approvals_needed=1,
                created_at=NOW,
                version=1,
            )
            .returning(RAW_REQUESTS.c.id)
        )
        return int(result.scalar_one())


def load(store: Store, request_id: int) -> RequestPayload:
    with store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        return row.payload


# ---- through the database ---------------------------------------------------------------


@pytest.mark.parametrize("payload", EVERY_ACTION, ids=lambda p: f"{p.action}")
def test_every_actions_payload_comes_back_from_the_database_as_it_went_in(
    store: Store, payload: RequestPayload
) -> None:
    request_id = add_request(store, payload)
    assert load(store, request_id) == payload
    with store.transaction() as session:
        (row,) = session.scalars(select(RequestRow).where(RequestRow.id == request_id))
        assert type(row.payload) is type(payload)


def test_a_row_an_older_version_wrote_loads_its_risk_facts_and_defaults_what_it_lacks(
    store: Store,
) -> None:
    request_id = insert_raw(
        store,
        "access",
        {
            "cluster": "gpu-cluster",
            "duration_seconds": 3600,
            "estimate": {"usd": 3.06, "explain": "1 node x 1 h x $3.06"},
            "rule": {"name": "gpu-short", "decide": "lead", "headline": "needs a team lead"},
            "budget_line": "$3.06 of $100.00 this month",
            "some_key_nobody_reads": [1, 2],
        },
    )
    payload = load(store, request_id)
    assert isinstance(payload, AccessPayload)
    assert (payload.cluster, payload.duration_seconds) == ("gpu-cluster", 3600.0)
    assert (payload.until_done, payload.extends_grant, payload.emergency) == (False, None, False)
    assert payload.estimate == CostEstimate(usd=3.06, explain="1 node x 1 h x $3.06")
    assert rule_of(payload) == RuleFacts(
        name="gpu-short", decide="lead", headline="needs a team lead"
    )
    assert payload.budget_line == "$3.06 of $100.00 this month"


def test_an_old_review_row_with_the_access_payload_spread_in_still_loads(store: Store) -> None:
    request_id = insert_raw(
        store,
        "review",
        {"cluster": "cpu-cluster", "duration_seconds": 1800.0, "emergency": True, "reviews": 1},
    )
    assert load(store, request_id) == ReviewPayload(
        reviews=1, cluster="cpu-cluster", duration_seconds=1800.0
    )


def test_a_stored_payload_that_does_not_fit_fails_naming_the_request_and_field(
    store: Store,
) -> None:
    request_id = insert_raw(store, "datastore", {"name": "d1", "store_kind": "blob"})
    with pytest.raises(UserError) as caught:
        load(store, request_id)
    assert f"Request #{request_id} cannot be read" in caught.value.render()
    assert "`account`" in caught.value.render()
    assert "`container`" in caught.value.render()


def test_a_payload_rewritten_by_an_update_statement_is_reloaded_as_its_model(
    store: Store,
) -> None:
    request_id = add_request(store, AccessPayload(cluster="gpu-cluster", duration_seconds=60.0))
    with store.transaction() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        session.execute(
            update(RequestRow)
            .where(RequestRow.id == request_id)
            .values(payload=row.payload.model_copy(update={"review_request": 9}))
            .execution_options(synchronize_session=False)
        )
        session.refresh(row)
        assert isinstance(row.payload, AccessPayload) and row.payload.review_request == 9


def test_a_plain_dict_is_refused_as_a_payload(store: Store) -> None:
    with pytest.raises(StatementError, match="not dict"), store.transaction() as session:
        session.add(
            RequestRow(
                workspace="demo",
                action="access",
                requester="alice",
                payload={"cluster": "gpu-cluster", "duration_seconds": 60.0},
                summary="a request",
                status="pending",
                approvals_needed=1,
                created_at=NOW,
                version=1,
            )
        )


def test_the_stored_json_keeps_the_risk_facts_at_the_top_level(store: Store) -> None:
    """Where older versions read them: a replica not yet upgraded still sees the rule's
    approver group and the card's facts on a request this version wrote."""
    request_id = add_request(store, EVERY_ACTION[0])
    with store.engine.connect() as connection:
        stored = connection.execute(
            select(RAW_REQUESTS.c.payload).where(RAW_REQUESTS.c.id == request_id)
        ).scalar_one()
    assert stored["rule"]["approvers"] == "ml-leads"
    assert stored["estimate"]["usd"] == 12.24
    assert (stored["cluster"], stored["action"]) == ("gpu-cluster", "access")


# ---- the models themselves ---------------------------------------------------------------


def test_the_action_column_chooses_the_model() -> None:
    payload = load_payload(7, "access", {"cluster": "gpu", "duration_seconds": 7200.0})
    assert isinstance(payload, AccessPayload)
    assert payload.cluster == "gpu"


def test_a_job_payload_reads_the_submitted_command_with_its_defaults() -> None:
    stored = {"compute": "cpu", "environment": "AzureML-sklearn-1.5@latest", "command": "t"}
    job = load_payload(7, "job", stored)
    assert isinstance(job, JobPayload)
    assert (job.instances, job.inputs, job.max_duration_seconds, job.job_alone) == (
        1,
        {},
        None,
        False,
    )


def test_an_unknown_compute_operation_fails_naming_the_field() -> None:
    with pytest.raises(UserError) as caught:
        load_payload(7, "compute", {"operation": "delete", "compute": "cpu"})
    assert "Request #7" in caught.value.render()
    assert "`operation`" in caught.value.render()
    assert "stop_instance" in caught.value.render()


def test_an_unknown_action_fails_naming_it() -> None:
    with pytest.raises(UserError) as caught:
        load_payload(7, "teleport", {})
    assert "`teleport`" in caught.value.render()


def test_only_assessed_requests_carry_a_rule() -> None:
    assert rule_of(EVERY_ACTION[0]) is not None
    assert rule_of(EVERY_ACTION[2]) is None  # a datastore registration


# ---- the handlers' helpers ---------------------------------------------------------------


def request(payload: RequestPayload) -> RequestRow:
    return RequestRow(id=7, action=payload.action, payload=payload)


def test_a_handler_asking_for_another_actions_model_is_refused() -> None:
    row = request(ComputePayload(operation="stop_instance", compute="nb"))
    assert payload_as(row, ComputePayload).compute == "nb"
    with pytest.raises(UserError):
        payload_as(row, DriftPayload)


def test_an_operation_without_its_value_is_refused_naming_it() -> None:
    row = request(ComputePayload(operation="set_min_nodes", compute="cpu"))
    payload = payload_as(row, ComputePayload)
    with pytest.raises(UserError) as caught:
        required(row, payload.min_nodes, "min_nodes")
    assert "`min_nodes`" in caught.value.render()
