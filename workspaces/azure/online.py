"""`amlbot check-config --online`: is the workspace reachable, and may the bot do its job?"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from typing import Any

from shared.errors import WorkspaceError
from workspaces.azure import delegation
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.errors import translated
from workspaces.azure.settings import AzureWorkspaceSettings

ML = "Microsoft.MachineLearningServices/workspaces"
PERMISSIONS_API_VERSION = "2022-04-01"
WORKSPACE_API_VERSION = "2024-04-01"

# What the bot does with each permission, so a missing one reads as a consequence. These and
# the PIM action are exactly what `deploy/azure-custom-role.json` grants (a test holds them
# together, and the test fake refuses any call the role does not cover).
REQUIRED_ACTIONS = {
    f"{ML}/read": "reach the workspace",
    f"{ML}/computes/read": "list computes and watch idle ones",
    f"{ML}/computes/write": "set a cluster's minimum nodes",
    f"{ML}/computes/stop/action": "stop idle compute instances",
    f"{ML}/computes/updateIdleShutdownSetting/action": "set a compute instance's idle shutdown",
    f"{ML}/datastores/read": "list datastores",
    f"{ML}/datastores/write": "register datastores",
    f"{ML}/environments/read": "list the workspace's environments",
    f"{ML}/environments/versions/read": "resolve a job's environment (NAME@latest)",
    f"{ML}/environments/versions/write": (
        "run a job from a Docker image (azure-ai-ml registers it as an anonymous environment)"
    ),
    f"{ML}/codes/versions/read": "run a job from a registered code asset",
    f"{ML}/data/versions/read": "give a job a registered data asset as input",
    f"{ML}/jobs/read": "follow jobs",
    f"{ML}/jobs/write": "submit jobs",
    f"{ML}/jobs/cancel/action": "cancel jobs (`jobs/write` does not cover it)",
    f"{ML}/experiments/runs/read": "say how long an ended job ran and why it failed",
    "Microsoft.MachineLearningServices/locations/vmsizes/read": (
        "show a GPU card's quota (a VM size's family and cores; subscription scope)"
    ),
    "Microsoft.MachineLearningServices/locations/usages/read": (
        "show a GPU card's quota (cores used and allowed per VM family; subscription scope)"
    ),
    "Microsoft.CostManagement/query/action": (
        "read the workspace's actual cost for a budget with `spend_from: cost_management` "
        "(resource group scope)"
    ),
    "Microsoft.Authorization/roleDefinitions/read": "look up the role to grant",
    "Microsoft.Authorization/roleAssignments/write": "grant cluster access",
    "Microsoft.Authorization/roleAssignments/delete": "revoke cluster access when it expires",
    "Microsoft.Authorization/roleAssignments/read": (
        "check that its own role assignment limits which roles it may grant"
    ),
}
ASSIGN = "Microsoft.Authorization/roleAssignments/write"
CONDITION_FILE = "deploy/azure-role-assignment-condition.txt"
PIM_ACTIONS = {
    "Microsoft.Authorization/roleAssignmentScheduleRequests/write": (
        "make time-bound (PIM) grants"
    ),
    "Microsoft.Authorization/roleAssignmentScheduleRequests/read": (
        "read back a PIM grant Azure already made (a retried request)"
    ),
}


def check_workspace(backend: AzureWorkspace, ws: AzureWorkspaceSettings) -> list[str]:
    """Problems found, each a sentence an administrator can act on; empty when all is well."""
    coords = backend.coordinates
    arm = backend.clients.arm()
    try:
        with translated(f"reaching workspace {coords.workspace_name}"):
            arm.request(
                "GET", coords.workspace_scope, params={"api-version": WORKSPACE_API_VERSION}
            )
    except WorkspaceError as error:
        return [error.message]
    problems: list[str] = []
    try:
        with translated(f"reading the bot's permissions on workspace {coords.workspace_name}"):
            grants = arm.list_all(
                f"{coords.workspace_scope}/providers/Microsoft.Authorization/permissions",
                params={"api-version": PERMISSIONS_API_VERSION},
            )
    except WorkspaceError as error:
        return [error.message]
    required = dict(REQUIRED_ACTIONS)
    if ws.access_mode == "pim":
        required.update(PIM_ACTIONS)
    for action, purpose in required.items():
        if not is_permitted(action, grants):
            problems.append(
                f"the bot's identity lacks `{action}` on `{coords.workspace_scope}` "
                f"(needed to {purpose})"
            )
    role = ws.access_role
    try:
        policy_role_id = backend.access.role_definition_id(coords.workspace_scope, role)
    except WorkspaceError as error:
        problems.append(f"policy access.role '{role}': {error.message}")
        return problems
    if is_permitted(ASSIGN, grants):
        problems.extend(_delegation_problems(backend, policy_role_id))
    return problems


def _delegation_problems(backend: AzureWorkspace, policy_role_id: str) -> list[str]:
    """Each of the bot's role assignments over the workspace whose role lets it assign roles
    must carry the condition that limits it to the policy's role and to users."""
    coords = backend.coordinates
    arm = backend.clients.arm()
    object_id = _own_object_id(backend)
    if object_id is None:
        return ["could not tell the bot's own object id from its token (no `oid` claim)"]
    permitted = [delegation.DATA_SCIENTIST_ROLE_ID, policy_role_id]
    try:
        with translated("reading the bot's own role assignments"):
            assignments = arm.list_all(
                f"{coords.workspace_scope}/providers/Microsoft.Authorization/roleAssignments",
                params={
                    "api-version": PERMISSIONS_API_VERSION,
                    "$filter": f"principalId eq '{object_id}'",
                },
            )
            found: list[str] = []
            for assignment in assignments:
                props = assignment.get("properties", {})
                definition = arm.request(
                    "GET",
                    str(props.get("roleDefinitionId", "")),
                    params={"api-version": PERMISSIONS_API_VERSION},
                )
                permissions = definition.get("properties", {}).get("permissions", [])
                if not is_permitted(ASSIGN, permissions):
                    continue
                for problem in delegation.problems(
                    props.get("condition"),
                    props.get("conditionVersion"),
                    permitted=permitted,
                    required=[policy_role_id],
                    principal_types={"User"},
                ):
                    found.append(
                        f"the bot's role assignment `{assignment.get('name')}` at "
                        f"`{props.get('scope')}` {problem} (give it the condition in "
                        f"`{CONDITION_FILE}` with the role ids "
                        f"{', '.join(sorted({delegation.guid_of(r) for r in permitted}))})"
                    )
    except WorkspaceError as error:
        return [error.message]
    return found


def _own_object_id(backend: AzureWorkspace) -> str | None:
    """The `oid` claim of the bot's ARM token: who the bot is, as Azure sees it."""
    connection = backend.clients.connection
    token = connection.credential.get_token(backend.clients.endpoints.arm_scope).token
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    oid = claims.get("oid") if isinstance(claims, dict) else None
    return str(oid) if oid else None


def is_permitted(action: str, grants: list[dict[str, Any]]) -> bool:
    """Whether Azure's permission list allows `action` (wildcards, notActions excluded)."""
    wanted = action.lower()
    for grant in grants:
        allowed = any(fnmatch.fnmatchcase(wanted, a.lower()) for a in grant.get("actions", []))
        denied = any(fnmatch.fnmatchcase(wanted, a.lower()) for a in grant.get("notActions", []))
        if allowed and not denied:
            return True
    return False
