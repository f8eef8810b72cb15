"""The console on the rules example: auto-approval, a group's card, a costly job's two leads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.paths import RULES_CONFIG

ENV = "azureml:AzureML-sklearn-1.5@latest"

SCRIPT = f"""\
@alice /aml access request cpu-cluster --for 2h --reason "quick look"
@alice /aml access request gpu-cluster --for 8h --reason "fine-tune"
@bob /aml approve 2
@dave /aml approve 2
@alice /aml job submit --compute gpu-cluster --environment {ENV} --command "python t.py" --instances 2 --max-duration 20h
@bob /aml approve 3
@dave /aml approve 3
"""


@pytest.fixture(scope="module")
def transcript(tmp_path_factory: pytest.TempPathFactory) -> str:
    database = tmp_path_factory.mktemp("console") / "state.sqlite3"
    env = {**os.environ, "AMLBOT_DATABASE_URL": f"sqlite:///{database}"}
    env.pop("AMLBOT_CONFIG", None)
    # The example's region (eastus) is priced by the shipped snapshot, as on a new machine.
    env.pop("AMLBOT_PRICE_SNAPSHOT", None)
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "console", "--config", str(RULES_CONFIG)],
        input=SCRIPT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def test_short_cpu_access_is_auto_approved(transcript: str) -> None:
    assert (
        "Auto-approved: CPU cluster, 2h, asked by a member, within policy rule `cpu-short`. "
        "Request #1 done: alice has access to `cpu-cluster`" in transcript
    )


def test_gpu_card_names_the_rule_and_cost(transcript: str) -> None:
    assert "Policy: needs group `gpu-approvers`: GPU cluster (policy rule `gpu`)" in transcript
    assert "Est. cost, whole grant: 2 nodes x $3.06/node-hour x 8h = $48.96" in transcript
    assert "Only members of group `gpu-approvers` (dave) can approve #2" in transcript


def test_costly_job_needs_two_leads_and_runs_after_both(transcript: str) -> None:
    assert "needs two team leads: est. $122.40 is above $100.00 (policy rule `costly`)" in (
        transcript
    )
    assert "Your approval of #3 is recorded (1 of 2)" in transcript
    assert "Approved #3. Job `amlbot-3-" in transcript
