"""The shipped role grants what the bot calls and nothing more, and the fake holds the bot to it.

The fake Azure checks every call against `deploy/azure-custom-role.json` (see
`tests/fakes/azure_arm.py`), so every other Azure test also proves the role is enough.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.errors import PermissionDeniedError
from tests.azure.test_jobs import job_spec
from tests.fakes.azure_arm import FakeAzure
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.online import PIM_ACTIONS, REQUIRED_ACTIONS
from workspaces.types import JobStatus

ROOT = Path(__file__).resolve().parents[2]
CANCEL = "Microsoft.MachineLearningServices/workspaces/jobs/cancel/action"


def role_actions() -> list[str]:
    return json.loads((ROOT / "deploy" / "azure-custom-role.json").read_text())["Actions"]


def readme_table_actions() -> list[str]:
    prefixes = {
        "ML": "Microsoft.MachineLearningServices/workspaces",
        "MLS": "Microsoft.MachineLearningServices",
        "Cost": "Microsoft.CostManagement",
        "Auth": "Microsoft.Authorization",
    }
    rows = re.findall(
        r"^\| `((?:ML|MLS|Cost|Auth)/[^`]+)` \|", (ROOT / "README.md").read_text(), re.M
    )
    return [prefixes[row.split("/", 1)[0]] + "/" + row.split("/", 1)[1] for row in rows]


def test_the_role_grants_exactly_what_check_config_requires() -> None:
    assert sorted(role_actions()) == sorted([*REQUIRED_ACTIONS, *PIM_ACTIONS])


def test_the_readme_table_lists_exactly_the_roles_actions() -> None:
    assert readme_table_actions() == role_actions()


def test_the_role_has_no_wildcards() -> None:
    assert not any("*" in action for action in role_actions())


def test_cancel_needs_its_own_action_not_jobs_write(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    backend.submit_job(job_spec())
    fake.bot_actions.remove(CANCEL)

    with pytest.raises(PermissionDeniedError, match=re.escape(f"`{CANCEL}`")):
        backend.cancel_job("amlbot-mlw-team-42")


def test_cancel_works_with_the_shipped_role(backend: AzureWorkspace, fake: FakeAzure) -> None:
    backend.submit_job(job_spec())

    assert backend.cancel_job("amlbot-mlw-team-42").status is JobStatus.CANCELED


def test_a_wildcard_grant_covers_what_it_matches_as_in_azure(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    jobs = "Microsoft.MachineLearningServices/workspaces/jobs/"
    fake.bot_actions = [a for a in fake.bot_actions if not a.startswith(jobs)]
    fake.bot_actions.append("microsoft.machinelearningservices/workspaces/JOBS/*")
    backend.submit_job(job_spec())

    assert backend.cancel_job("amlbot-mlw-team-42").status is JobStatus.CANCELED
