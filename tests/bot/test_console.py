"""The console front end runs the core's whole scenario from a pipe, across runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = "azureml:AzureML-sklearn-1.5@latest"

FIRST_RUN = f"""\
@alice /aml access request gpu-cluster --for 2h --reason "fine-tune BERT"
@alice /aml approve 1
@bob /aml approve 1
@alice /aml access list
@alice /aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"
@alice /aml job list --mine
"""

SECOND_RUN = f"""\
@carol /aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"
@alice /aml datastore register trainingdata --kind blob --account contosodata --container training
@bob /aml deny 3 --reason "use the shared lake instead"
@bob /aml audit
@alice /aml audit
/aml whoami
@nobody /aml help
"""


def run_console(script: str, database: Path) -> str:
    env = {**os.environ, "AMLBOT_DATABASE_URL": f"sqlite:///{database}"}
    env.pop("AMLBOT_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "console"],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def transcripts(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    database = tmp_path_factory.mktemp("console") / "state.sqlite3"
    return run_console(FIRST_RUN, database), run_console(SECOND_RUN, database)


def test_access_request_is_pending_with_an_id(transcripts: tuple[str, str]) -> None:
    first, _ = transcripts
    assert "Request #1 (access to gpu-cluster for 2h) is waiting for a team lead" in first
    assert "[#demo (C0DEMO0001), approval card]" in first
    assert "[Approve: /aml approve 1]" in first


def test_own_approval_is_refused(transcripts: tuple[str, str]) -> None:
    first, _ = transcripts
    assert "Only team leads of `demo` (bob) can approve #1." in first


def test_lead_approval_executes_the_grant_with_expiry(transcripts: tuple[str, str]) -> None:
    first, _ = transcripts
    assert "Approved #1. Request #1 done: alice has access to `gpu-cluster` until" in first
    assert "[to @alice] Request #1 done" in first
    assert "grant #1: *alice* on `gpu-cluster`" in first


def test_job_with_grant_is_accepted_and_listed(transcripts: tuple[str, str]) -> None:
    first, _ = transcripts
    assert "Job `amlbot-2-" in first and "submitted on `gpu-cluster`" in first
    assert "*Your jobs in `demo`*" in first


def test_a_job_run_within_policy_shows_no_card_as_in_slack(
    transcripts: tuple[str, str],
) -> None:
    first, _ = transcripts
    job_turn = first.split("job submit", 1)[1].split("> ", 1)[0]
    assert "Job `amlbot-2-" in job_turn
    assert "card updated" not in job_turn and "#2 Run a job" not in job_turn


def test_job_without_grant_is_refused_with_the_access_command(
    transcripts: tuple[str, str],
) -> None:
    _, second = transcripts
    assert "/aml access request gpu-cluster --for 4h" in second


def test_datastore_request_waits_then_deny_reaches_alice(transcripts: tuple[str, str]) -> None:
    _, second = transcripts
    assert "Request #3 (register blob datastore trainingdata" in second
    assert "[to @alice] bob denied your request #3" in second
    assert "use the shared lake instead" in second


def test_audit_lists_everything_for_bob_and_refuses_alice(
    transcripts: tuple[str, str],
) -> None:
    _, second = transcripts
    bob_part = second.split("> @bob /aml audit")[1].split("> @alice /aml audit")[0]
    for action in (
        "access.requested",
        "access.approved",
        "access.executed",
        "job.executed",
        "datastore.requested",
        "datastore.denied",
        "request.approve",
    ):
        assert action in bob_part, action
    alice_part = second.split("> @alice /aml audit")[1]
    assert "The audit trail is for team leads only" in alice_part


def test_line_without_prefix_acts_as_the_last_person(transcripts: tuple[str, str]) -> None:
    _, second = transcripts
    assert "> @alice /aml whoami" in second and "You are *alice*." in second


def test_unknown_person_is_named(transcripts: tuple[str, str]) -> None:
    _, second = transcripts
    assert "Nobody called @nobody is configured" in second
