"""`/aml job submit` and `/aml datastore register` with no arguments open a form filled
from the workspace; its submission takes the typed command's path, and a field error
comes back into the form."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from approvals.tables import AuditRow, RequestRow
from bot.slack.views.common import DATASTORE_MODAL, JOB_MODAL
from tests.slack.conftest import ALICE, CHANNEL, STRANGER, SlackHarness, wait_for


def text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def form(harness: SlackHarness, user: str, command: str, callback_id: str) -> dict[str, Any]:
    harness.command(user, command)
    return wait_for(
        lambda: next(
            (
                v.view
                for v in harness.slack.views()
                if v.view.get("callback_id") == callback_id and v.updates
            ),
            None,
        ),
        what=f"the {callback_id} form",
    )


def options(view: dict[str, Any], block_id: str) -> list[str]:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return [option["value"] for option in block["element"]["options"]]


def job_values(**overrides: dict[str, Any]) -> dict[str, Any]:
    values = {
        "compute": choice("cpu-cluster"),
        "environment": choice("AzureML-sklearn-1.5@latest"),
        "command": text("python train.py"),
        "instances": {"type": "number_input", "value": "1"},
        "code": text(""),
        "input_datastore": {"type": "static_select", "selected_option": None},
        "input_path": text(""),
        "experiment": text(""),
        "name": text(""),
    }
    values.update(overrides)
    return {block: {block: state} for block, state in values.items()}


def test_job_form_offers_the_workspace_clusters_environments_and_datastores(
    harness: SlackHarness,
) -> None:
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    assert options(view, "compute") == ["cpu-cluster", "gpu-cluster"]
    assert "AzureML-sklearn-1.5@latest" in options(view, "environment")
    assert "workspaceblobstore" in options(view, "input_datastore")
    assert json.loads(view["private_metadata"])["ws"] == "demo"


def test_job_form_submission_runs_like_the_typed_command(harness: SlackHarness) -> None:
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    response = harness.submit(ALICE, JOB_MODAL, job_values(), view["private_metadata"])
    assert (response.status, response.body) == (200, "")
    answer = harness.answer_to(ALICE, containing="submitted on `cpu-cluster`")
    assert "Job `amlbot-1-" in answer


def test_job_form_field_error_comes_back_into_the_form(harness: SlackHarness) -> None:
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    values = job_values(experiment=text("not a valid name!"))
    response = harness.submit(ALICE, JOB_MODAL, values, view["private_metadata"])
    assert response.json()["response_action"] == "errors"
    errors = response.json()["errors"]
    assert list(errors) == ["experiment"] and "--experiment" in errors["experiment"]


def test_datastore_form_submission_posts_an_approval_card(harness: SlackHarness) -> None:
    view = form(harness, ALICE, "datastore register", DATASTORE_MODAL)
    assert "workspaceblobstore" in str(view["blocks"][0])  # existing ones are listed
    values = {
        "name": {"name": text("trainingdata")},
        "kind": {"kind": choice("blob")},
        "account": {"account": text("contosodata")},
        "container": {"container": text("training")},
        "description": {"description": text("")},
    }
    harness.submit(ALICE, DATASTORE_MODAL, values, view["private_metadata"])
    request_id = harness.request_id(harness.answer_to(ALICE, containing="waiting"))
    assert "Register datastore trainingdata" in harness.card(request_id, CHANNEL).all_text


def test_secret_in_a_form_field_is_refused_there(harness: SlackHarness) -> None:
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    leaked = "python train.py --conn 'DefaultEndpointsProtocol=https;AccountKey=abc123=='"
    response = harness.submit(
        ALICE, JOB_MODAL, job_values(command=text(leaked)), view["private_metadata"]
    )
    assert list(response.json()["errors"]) == ["command"]
    assert "abc123" not in response.body
    wait_for(lambda: refused_secrets(harness) == 1, what="the refusal to be audited")
    assert "abc123" not in harness.answer_to(ALICE, containing="AccountKey")


def refused_secrets(harness: SlackHarness) -> int:
    with harness.core.store.transaction() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.action == "command.refused"))
        return len([row for row in rows if row.outcome == "secret"])


def test_form_for_someone_in_no_workspace_is_not_opened(harness: SlackHarness) -> None:
    harness.command(STRANGER, "job submit")
    assert "I don't know you yet" in harness.answer_to(STRANGER)
    assert not harness.slack.views()


def test_a_key_as_the_input_path_is_refused_and_no_job_is_submitted(harness: SlackHarness) -> None:
    key = "Zm9vYmFy" * 10 + "Zm9vYm" + "=="  # the shape of a storage account key
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    values = job_values(input_datastore=choice("workspaceblobstore"), input_path=text(f"/{key}"))
    response = harness.submit(ALICE, JOB_MODAL, values, view["private_metadata"])
    assert list(response.json()["errors"]) == ["input_path"]
    wait_for(lambda: refused_secrets(harness) == 1, what="the refusal to be audited")
    assert key not in harness.answer_to(ALICE, containing="a storage account key")
    with harness.core.store.transaction() as session:
        assert session.scalars(select(RequestRow)).first() is None
    assert not [c for c in harness.slack.calls() if key in json.dumps(c.params)]


def test_a_secret_as_the_workspace_of_a_form_is_refused_not_echoed(harness: SlackHarness) -> None:
    token = "xoxp-123456789012-123456789012-abcdef0123456789"
    harness.command(ALICE, f"job submit --workspace {token}")
    answer = harness.answer_to(ALICE, containing="a Slack token")
    assert token not in answer
    wait_for(lambda: refused_secrets(harness) == 1, what="the refusal to be audited")
    assert not [c for c in harness.slack.calls() if token in json.dumps(c.params)]


def test_a_control_character_in_a_form_field_is_refused_next_to_it(
    harness: SlackHarness,
) -> None:
    view = form(harness, ALICE, "datastore register", DATASTORE_MODAL)
    values = {
        "name": {"name": text("trainingdata")},
        "kind": {"kind": choice("blob")},
        "account": {"account": text("contosodata")},
        "container": {"container": text("training")},
        "description": {"description": text("the\x00lake")},
    }
    response = harness.submit(ALICE, DATASTORE_MODAL, values, view["private_metadata"])
    errors = response.json()["errors"]
    assert list(errors) == ["description"] and "control character" in errors["description"]


def test_job_form_time_limit_becomes_the_jobs_limit_and_estimate(harness: SlackHarness) -> None:
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    assert any(b.get("block_id") == "max_duration" for b in view["blocks"])
    values = job_values(max_duration=text("2h"))
    harness.submit(ALICE, JOB_MODAL, values, view["private_metadata"])
    answer = harness.answer_to(ALICE, containing="submitted on `cpu-cluster`")
    assert "Est. cost: 1 node x $0.29/node-hour x 2h = $0.59." in answer


def test_job_form_time_limit_error_comes_back_next_to_it(harness: SlackHarness) -> None:
    view = form(harness, ALICE, "job submit", JOB_MODAL)
    values = job_values(max_duration=text("soon"))
    response = harness.submit(ALICE, JOB_MODAL, values, view["private_metadata"])
    assert list(response.json()["errors"]) == ["max_duration"]
