"""deploy/azure/amlbot.json creates what the README says, with the role and condition shipped.

Checked for structure (Azure itself is not reached): resources, types, apiVersions, the
custom role's actions against `deploy/azure-custom-role.json`, the federated credential
for workload identity, and the condition on each workspace assignment, evaluated with its
default parameters and read back as `check-config --online` reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from workspaces.azure import delegation

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = json.loads((ROOT / "deploy" / "azure" / "amlbot.json").read_text())
ROLE = json.loads((ROOT / "deploy" / "azure-custom-role.json").read_text())
DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8f32e121"


def resource(kind: str) -> dict[str, Any]:
    [found] = [r for r in TEMPLATE["resources"] if r["type"] == kind]
    return found


def evaluated_condition(role_ids: list[str]) -> str:
    """The condition ARM computes: `format('...', join(parameters('grantableRoleIds'), ', '))`."""
    expression = TEMPLATE["variables"]["condition"]
    found = re.fullmatch(
        r"\[format\('(?P<text>.*)', join\(parameters\('grantableRoleIds'\), ', '\)\)\]",
        expression,
    )
    assert found is not None, expression
    return found["text"].replace("''", "'").format(", ".join(role_ids))


def test_it_is_an_arm_template_of_the_four_resources_at_stable_api_versions() -> None:
    assert TEMPLATE["$schema"].endswith("/2019-04-01/deploymentTemplate.json#")
    assert sorted((r["type"], r["apiVersion"]) for r in TEMPLATE["resources"]) == [
        ("Microsoft.Authorization/roleAssignments", "2022-04-01"),
        ("Microsoft.Authorization/roleDefinitions", "2022-04-01"),
        ("Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31"),
        (
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
            "2023-01-31",
        ),
    ]


def test_the_custom_role_is_the_shipped_one() -> None:
    definition = resource("Microsoft.Authorization/roleDefinitions")["properties"]
    [permissions] = definition["permissions"]

    assert permissions["actions"] == ROLE["Actions"]
    assert permissions["notActions"] == permissions["dataActions"] == []
    assert TEMPLATE["variables"]["roleName"] == ROLE["Name"]
    assert definition["description"] == ROLE["Description"]
    assert definition["type"] == "CustomRole"


def test_the_role_is_assigned_to_the_identity_at_each_workspace_with_the_condition() -> None:
    assignment = resource("Microsoft.Authorization/roleAssignments")
    props = assignment["properties"]

    assert assignment["copy"]["count"] == "[length(parameters('workspaceNames'))]"
    assert assignment["scope"].startswith("[format('Microsoft.MachineLearningServices/workspaces/")
    assert "copyIndex()" in assignment["scope"]
    assert "userAssignedIdentities" in props["principalId"]
    assert props["principalType"] == "ServicePrincipal"
    assert props["condition"] == "[variables('condition')]"
    assert props["conditionVersion"] == delegation.CONDITION_VERSION


def test_the_condition_limits_grants_to_the_given_roles_and_users() -> None:
    default_roles = TEMPLATE["parameters"]["grantableRoleIds"]["defaultValue"]
    assert default_roles == [DATA_SCIENTIST]

    for roles in (default_roles, [DATA_SCIENTIST, "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815"]):
        found = delegation.problems(
            evaluated_condition(roles),
            "2.0",
            permitted=roles,
            required=roles,
            principal_types={"User"},
        )
        assert found == [], found


def test_the_identity_is_federated_with_the_kubernetes_service_account() -> None:
    credential = resource(
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    )
    props = credential["properties"]

    assert props["audiences"] == ["api://AzureADTokenExchange"]
    assert props["issuer"] == "[parameters('oidcIssuerUrl')]"
    assert props["subject"].startswith("[format('system:serviceaccount:{0}:{1}'")
    assert TEMPLATE["parameters"]["serviceAccountName"]["defaultValue"] == "amlbot"
    kubernetes = (ROOT / "deploy" / "kubernetes" / "base" / "amlbot.yml").read_text()
    assert "serviceAccountName: amlbot" in kubernetes
