"""deploy/azure/amlbot.json creates what the README says, with the role and condition shipped.

Checked for structure (Azure itself is not reached): resources, types, apiVersions, the
custom role's actions against `deploy/azure-custom-role.json`, the federated credential
for workload identity, and the condition on each workspace assignment, evaluated with its
default parameters and read back as `check-config --online` reads it; and the small
quota-and-cost reader role, assigned at the subscription by a nested deployment.
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


QUOTA_AND_COST_ACTIONS = [
    "Microsoft.MachineLearningServices/locations/vmsizes/read",
    "Microsoft.MachineLearningServices/locations/usages/read",
    "Microsoft.CostManagement/query/action",
]
IDENTITY_ID = (
    "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', parameters('identityName'))]"
)


def test_it_is_an_arm_template_of_five_resources_at_stable_api_versions() -> None:
    assert TEMPLATE["$schema"].endswith("/2019-04-01/deploymentTemplate.json#")
    assert sorted((r["type"], r["apiVersion"]) for r in TEMPLATE["resources"]) == [
        ("Microsoft.Authorization/roleAssignments", "2022-04-01"),
        ("Microsoft.Authorization/roleDefinitions", "2022-04-01"),
        ("Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31"),
        (
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
            "2023-01-31",
        ),
        ("Microsoft.Resources/deployments", "2022-09-01"),
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


def subscription_deployment() -> dict[str, Any]:
    return resource("Microsoft.Resources/deployments")


def inner_resource(kind: str) -> dict[str, Any]:
    [found] = [
        r
        for r in subscription_deployment()["properties"]["template"]["resources"]
        if r["type"] == kind
    ]
    return found


def test_the_quota_and_cost_reader_is_deployed_at_the_subscription_unless_turned_off() -> None:
    deployment = subscription_deployment()
    props = deployment["properties"]

    # A nested deployment with `subscriptionId` and `location` (and no `resourceGroup`)
    # deploys at the subscription; its template is a subscription deployment template.
    assert deployment["subscriptionId"] == "[subscription().subscriptionId]"
    assert "resourceGroup" not in deployment
    assert deployment["location"] == "[parameters('location')]"
    assert props["template"]["$schema"].endswith("/2018-05-01/subscriptionDeploymentTemplate.json#")
    assert props["expressionEvaluationOptions"] == {"scope": "inner"}
    assert deployment["condition"] == "[parameters('assignQuotaAndCostReader')]"
    parameter = TEMPLATE["parameters"]["assignQuotaAndCostReader"]
    assert parameter["type"] == "bool"
    assert parameter["defaultValue"] is True
    assert IDENTITY_ID in deployment["dependsOn"]


def test_the_quota_and_cost_reader_holds_exactly_the_three_reads_above_the_workspace() -> None:
    definition = inner_resource("Microsoft.Authorization/roleDefinitions")
    props = definition["properties"]
    [permissions] = props["permissions"]

    assert permissions["actions"] == QUOTA_AND_COST_ACTIONS
    assert permissions["notActions"] == permissions["dataActions"] == []
    assert permissions["notDataActions"] == []
    assert props["type"] == "CustomRole"
    assert props["assignableScopes"] == ["[subscription().id]"]
    assert props["roleName"] == "[parameters('roleName')]"
    passed = subscription_deployment()["properties"]["parameters"]["roleName"]["value"]
    assert passed == "[variables('quotaCostRoleName')]"
    assert TEMPLATE["variables"]["quotaCostRoleName"] == "amlbot quota and cost reader"
    # The operator role the bot checks for (and the fake enforces) also lists them.
    assert set(QUOTA_AND_COST_ACTIONS) <= set(ROLE["Actions"])


def test_the_quota_and_cost_reader_is_assigned_to_the_bots_identity_at_the_subscription() -> None:
    assignment = inner_resource("Microsoft.Authorization/roleAssignments")
    props = assignment["properties"]
    definition = inner_resource("Microsoft.Authorization/roleDefinitions")
    role_id = (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        f"{definition['name'][1:-1]})]"
    )
    passed = subscription_deployment()["properties"]["parameters"]

    # No `scope`: a resource of a subscription deployment is at the subscription.
    assert "scope" not in assignment
    assert props["roleDefinitionId"] == role_id
    assert role_id in assignment["dependsOn"]
    assert props["principalType"] == "ServicePrincipal"
    assert props["principalId"] == "[parameters('principalId')]"
    assert passed["principalId"]["value"] == (
        f"[reference({IDENTITY_ID[1:-1]}, '2023-01-31').principalId]"
    )
    assert "condition" not in props
    assert "subscription().id" in assignment["name"]
