"""The console front end with `backend: azure`: the bot, run as `amlbot console`, builds its
own Azure backend with `DefaultAzureCredential` (the fake's managed identity) and drives
the core scenario against the fake Azure Resource Manager over TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_arm_state import BUILTIN_ROLES
from workspaces.types import AzureCoordinates

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "deploy" / "kubernetes" / "base" / "config.example.yml"
ENV = "azureml:AzureML-sklearn-1.5@latest"
ALICE = "11111111-1111-4111-8111-111111111111"  # alice's object_id in the example config

SCRIPT = f"""\
@bob /aml compute list
@alice /aml access request gpu-cluster --for 2h --reason "fine-tune BERT"
@bob /aml approve 1
@alice /aml job submit --compute gpu-cluster --environment {ENV} --command "python train.py"
@alice /aml datastore register trainingdata --kind blob --account contosodata --container training
@bob /aml deny 3 --reason "use the shared lake instead"
@bob /aml audit
"""

# Not passed on to the bot: credentials DefaultAzureCredential would try before the managed
# identity, the SDK's recorded cloud, and another configuration file.
_NOT_INHERITED = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZUREML_CURRENT_CLOUD",
    "AMLBOT_CONFIG",
)


@dataclass
class Run:
    fake: FakeAzure
    coords: AzureCoordinates
    output: str

    def said_to(self, person: str, command: str) -> str:
        """What the console printed for `@person command`, up to the next command."""
        return self.output.split(f"> @{person} {command}", 1)[1].split("\n> @", 1)[0]


def azure_config(fake: FakeAzure) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    raw["workspaces"]["demo"]["backend"] = "azure"
    raw["cloud"] = fake.cloud_config().model_dump(exclude_none=True)
    return raw


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with FakeAzure(page_size=50) as fake:
        fake.lro_retry_after = "0.01"
        raw = azure_config(fake)
        demo = raw["workspaces"]["demo"]["azure"]
        coords = fake.add_workspace(
            demo["subscription_id"], demo["resource_group"], demo["workspace_name"]
        )
        fake.add_cluster(
            coords,
            "gpu-cluster",
            max_nodes=2,
            current_nodes=2,
            priority="LowPriority",
            node_state_counts={"runningNodeCount": 1, "idleNodeCount": 1},
        )
        fake.add_cluster(
            coords,
            "cpu-cluster",
            vm_size="STANDARD_DS3_V2",
            min_nodes=1,
            max_nodes=4,
            current_nodes=1,
        )
        fake.add_principal(ALICE)

        folder = tmp_path_factory.mktemp("console-azure")
        config = folder / "config.yml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update(fake.managed_identity_env())
        env["AMLBOT_DATABASE_URL"] = f"sqlite:///{folder / 'state.sqlite3'}"
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli", "console", "--config", str(config)],
            input=SCRIPT,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
        assert fake.server_errors == []
        yield Run(fake, coords, result.stdout)


def test_the_bot_builds_its_backend_with_the_managed_identity(run: Run) -> None:
    assert "Workspaces: demo (azure)" in run.output
    assert run.fake.calls_to("GET", "/msi/token$")


def test_compute_list_shows_node_counts_from_azure(run: Run) -> None:
    listed = run.said_to("bob", "/aml compute list")
    assert "cluster `gpu-cluster`" in listed
    assert "nodes 2 up (min 0, max 2) [idle 1, running 1]" in listed
    assert "nodes 1 up (min 1, max 4) [idle 1]" in listed
    assert run.fake.calls_to("GET", "/workspaces/mlw-demo/computes$")


def test_approval_puts_a_role_assignment_for_alice_at_the_cluster_scope(run: Run) -> None:
    approved = run.said_to("bob", "/aml approve 1")
    assert "Request #1 done: alice has access to `gpu-cluster` until" in approved
    assert "up to about 10 minutes" in approved
    assert "[to @alice] Request #1 done" in approved
    [grant] = run.fake.calls_to("PUT", "roleAssignments/")
    assert grant.path.startswith(
        run.coords.compute_scope("gpu-cluster") + "/providers/Microsoft.Authorization/"
    )
    props = grant.body["properties"]
    assert props["principalId"] == ALICE
    assert props["roleDefinitionId"].endswith(BUILTIN_ROLES["AzureML Data Scientist"])
    [assignment] = run.fake.assignments()
    assert assignment["properties"]["principalId"] == ALICE


def test_job_is_a_put_of_a_command_job_tagged_with_the_requester(run: Run) -> None:
    submitted = run.said_to("alice", "/aml job submit")
    assert "submitted on `gpu-cluster`" in submitted
    [job] = run.fake.calls_to("PUT", "/jobs/")
    props = job.body["properties"]
    assert props["jobType"] == "Command"
    assert props["computeId"] == run.coords.compute_scope("gpu-cluster")
    assert props["environmentId"] == ENV
    assert props["tags"]["amlbot-requester"] == "alice"
    assert props["tags"]["amlbot-request"] == "2"
    # The console runs in the bot's own checkout: its repository is not stamped on the job.
    assert not [key for key in props.get("properties", {}) if "git" in key.lower()]


def test_denied_datastore_request_makes_no_datastore_put(run: Run) -> None:
    denied = run.said_to("bob", "/aml deny 3")
    assert "[to @alice] bob denied your request #3" in denied
    assert "use the shared lake instead" in denied
    assert run.fake.calls_to("PUT", "/datastores/") == []


def test_audit_shows_the_scenario_to_bob(run: Run) -> None:
    trail = run.said_to("bob", "/aml audit")
    for action in (
        "access.requested",
        "access.approved",
        "access.executed #1 -> succeeded",
        "job.executed #2 -> succeeded",
        "datastore.requested",
        "datastore.denied",
    ):
        assert action in trail, action
