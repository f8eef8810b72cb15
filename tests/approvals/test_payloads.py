"""A request's payload is stored as JSON and read back as its action's model."""

from __future__ import annotations

import pytest

from approvals.actions.payloads import (
    AccessPayload,
    ComputePayload,
    DriftPayload,
    JobPayload,
    payload_as,
    read_payload,
    required,
)
from approvals.tables import RequestRow
from shared.errors import UserError


def request(action: str, payload: dict[str, object]) -> RequestRow:
    return RequestRow(id=7, action=action, payload=payload)


def test_the_action_column_chooses_the_model() -> None:
    payload = read_payload(request("access", {"cluster": "gpu", "duration_seconds": 7200.0}))
    assert isinstance(payload, AccessPayload)
    assert payload.cluster == "gpu"
    assert payload.until_done is False
    assert payload.extends_grant is None


def test_the_risk_facts_kept_for_the_card_are_ignored() -> None:
    stored = {
        "cluster": "gpu",
        "duration_seconds": 3600,
        "estimate": {"usd": 3.2, "explain": "1 node x 1 h", "source": "retail"},
        "rule": {"name": "gpu-short"},
    }
    assert payload_as(request("access", stored), AccessPayload).duration_seconds == 3600.0


def test_a_job_payload_reads_the_submitted_command_with_its_defaults() -> None:
    stored = {
        "compute": "cpu",
        "environment": "AzureML-sklearn-1.5@latest",
        "command": "python t.py",
    }
    job = payload_as(request("job", stored), JobPayload)
    assert (job.instances, job.inputs, job.max_duration_seconds) == (1, {}, None)


def test_an_unknown_compute_operation_fails_naming_the_field() -> None:
    with pytest.raises(UserError) as caught:
        read_payload(request("compute", {"operation": "delete", "compute": "cpu"}))
    assert "`operation`" in caught.value.render()
    assert "stop_instance" in caught.value.render()


def test_a_missing_field_is_named() -> None:
    with pytest.raises(UserError) as caught:
        read_payload(request("datastore", {"name": "d1", "store_kind": "blob", "account": "a"}))
    assert "`container`" in caught.value.render()


def test_a_handler_asking_for_another_actions_model_is_refused() -> None:
    row = request("compute", {"operation": "stop_instance", "compute": "nb"})
    assert payload_as(row, ComputePayload).compute == "nb"
    with pytest.raises(UserError):
        payload_as(row, DriftPayload)


def test_an_operation_without_its_value_is_refused_naming_it() -> None:
    row = request("compute", {"operation": "set_min_nodes", "compute": "cpu"})
    payload = payload_as(row, ComputePayload)
    with pytest.raises(UserError) as caught:
        required(row, payload.min_nodes, "min_nodes")
    assert "`min_nodes`" in caught.value.render()
