"""What the fake Azure holds: workspaces and their resources, roles, people; and how it errs."""

from __future__ import annotations

import fnmatch
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.azure_credential import BOT_OBJECT_ID
from workspaces.types import AzureCoordinates

ML = "Microsoft.MachineLearningServices"


def _wall_clock() -> datetime:
    return datetime.now(UTC)


# Built-in role definitions (their ids are the same in every tenant).
BUILTIN_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "AzureML Compute Operator": "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
}

# What amlbot's identity is given: the role the project ships, so a call the bot makes
# that the role does not grant fails a test as it would fail in Azure.
ROLE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "azure-custom-role.json"
# The condition the project ships for the bot's own assignment of that role.
CONDITION_FILE = ROLE_FILE.parent / "azure-role-assignment-condition.txt"
BOT_ROLE_ID = "0a1b0000-0000-4000-8000-00000000a0b0"  # the custom role's id in this tenant


def shipped_role_actions() -> list[str]:
    role = json.loads(ROLE_FILE.read_text())
    return [str(action) for action in role["Actions"]]


def grants(granted: list[str], action: str) -> bool:
    """Azure's matching of an action against a role's: case-insensitive, `*` matches any
    run of characters (slashes included)."""
    wanted = action.lower()
    return any(fnmatch.fnmatchcase(wanted, pattern.lower()) for pattern in granted)


@dataclass
class Call:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    # What the fake answered in `x-ms-request-id`, as Azure names each request it served.
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class FakeResponse:
    status: int
    body: Any  # JSON, or `bytes` sent as they are (a blob)
    headers: dict[str, str] = field(default_factory=dict)


class ArmError(Exception):
    """An ARM error answer: `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self, headers: dict[str, str] | None = None) -> FakeResponse:
        return FakeResponse(
            self.status, {"error": {"code": self.code, "message": self.message}}, headers or {}
        )


@dataclass
class RunRecord:
    """What RunHistory knows of a job beyond its ARM entity (see `azure_run_history`)."""

    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: dict[str, Any] | None = None  # RunHistory's `{"error": {...}, "correlation": ...}`
    logs: dict[str, str] = field(default_factory=dict)  # log name -> blob path
    metrics: dict[str, float] = field(default_factory=dict)  # MLflow's latest values


@dataclass
class Blob:
    """A log blob, readable with its SAS signature only."""

    data: bytes
    signature: str
    query: str  # the whole SAS query string, as handed out in `logFiles`


@dataclass
class WorkspaceState:
    coordinates: AzureCoordinates
    location: str
    computes: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower name -> body
    datastores: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    environments: list[str] = field(default_factory=list)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower asset id -> body
    runs: dict[str, RunRecord] = field(default_factory=dict)  # lower job name -> record

    @property
    def id(self) -> str:
        return self.coordinates.workspace_scope


class ArmState:
    """The data behind the fake, guarded by one lock; seed it with the `add_*` methods."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.workspaces: dict[str, WorkspaceState] = {}  # lower workspace id -> state
        self.role_assignments: dict[str, dict[str, Any]] = {}  # lower assignment id -> body
        # Assignment names whose DELETE Azure acknowledges but does not carry out yet (a
        # revocation that did not take); reads still find them.
        self.lagging_deletes: set[str] = set()
        self.schedule_requests: dict[str, dict[str, Any]] = {}
        self.users: dict[str, str] = {}  # lower e-mail (UPN) -> object id
        # VM family -> core limit in every location (azure_arm_quota.py has the defaults).
        self.quota_limits: dict[str, int] = {}
        # Lower workspace id -> its actual cost this month (Cost Management's answer).
        self.month_costs: dict[str, float] = {}
        self.mail: dict[str, str] = {}  # lower `mail` that differs from the UPN -> object id
        self.principals: set[str] = set()
        self.bot_actions: list[str] = shipped_role_actions()
        self.denied: set[str] = set()  # actions the bot's identity lacks
        # The bot's own assignment of its role at each workspace, and its condition (ABAC):
        # Azure checks that condition on every role assignment write and delete.
        self.bot_assignments: dict[str, dict[str, Any]] = {}  # lower scope -> body
        self.bot_condition: str | None = CONDITION_FILE.read_text()
        self.bot_condition_version: str | None = "2.0"
        self.role_assignment_limit = 4000
        self.pim_licensed = True
        # When PIM assignments end is judged by this; a test may hand in its own clock's.
        self.now: Callable[[], datetime] = _wall_clock
        self.key_vault_secrets: dict[str, str] = {}  # the fake's one Key Vault
        self.blobs: dict[str, Blob] = {}  # path under /blobs/ -> blob
        self.caller_object_id = BOT_OBJECT_ID
        self.lro_subscription = "00000000-0000-0000-0000-000000000000"

    # -- seeding -------------------------------------------------------------------------

    def add_workspace(
        self,
        subscription_id: str = "11111111-2222-3333-4444-555555555555",
        resource_group: str = "rg-ml",
        name: str = "mlw-team",
        *,
        location: str = "eastus",
    ) -> AzureCoordinates:
        coords = AzureCoordinates(
            subscription_id=subscription_id, resource_group=resource_group, workspace_name=name
        )
        ws = WorkspaceState(coords, location, environments=["my-env"])
        for store in _default_datastores(ws):
            ws.datastores[store["name"].lower()] = store
        self._add_asset(
            ws,
            "codes",
            "train-src",
            "1",
            {"codeUri": "https://stmlteam.blob.core.windows.net/code/train-src"},
        )
        self._add_asset(
            ws,
            "data",
            "iris",
            "1",
            {
                "dataType": "uri_file",
                "dataUri": "azureml://datastores/workspaceblobstore/paths/iris.csv",
            },
        )
        self._add_asset(
            ws,
            "data",
            "sales",
            "3",
            {
                "dataType": "mltable",
                "dataUri": "azureml://datastores/workspaceblobstore/paths/sales/",
            },
        )
        with self.lock:
            self.workspaces[ws.id.lower()] = ws
            name_ = str(uuid.uuid4())
            self.bot_assignments[ws.id.lower()] = {
                "id": f"{ws.id}/providers/Microsoft.Authorization/roleAssignments/{name_}",
                "name": name_,
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": {
                    "roleDefinitionId": f"/subscriptions/{subscription_id}/providers/"
                    f"Microsoft.Authorization/roleDefinitions/{BOT_ROLE_ID}",
                    "principalId": BOT_OBJECT_ID,
                    "principalType": "ServicePrincipal",
                    "scope": ws.id,
                },
            }
            self.lro_subscription = subscription_id
        return coords

    @staticmethod
    def _add_asset(
        ws: WorkspaceState, kind: str, name: str, version: str, props: dict[str, Any]
    ) -> None:
        asset_id = f"{ws.id}/{kind}/{name}/versions/{version}"
        ws.assets[asset_id.lower()] = {
            "id": asset_id,
            "name": version,
            "type": f"{ML}/workspaces/{kind}/versions",
            "properties": {
                "description": None,
                "tags": {},
                "properties": {},
                "isArchived": False,
                "isAnonymous": False,
                **props,
            },
        }

    def workspace(self, coords: AzureCoordinates) -> WorkspaceState:
        return self.workspaces[coords.workspace_scope.lower()]

    def add_cluster(
        self,
        coords: AzureCoordinates,
        name: str,
        *,
        vm_size: str = "Standard_NC6s_v3",
        priority: str = "Dedicated",
        min_nodes: int = 0,
        max_nodes: int = 4,
        current_nodes: int = 0,
        node_state_counts: dict[str, int] | None = None,
        idle_before_scale_down: str = "PT2M",
        allocation_state: str = "Steady",
    ) -> None:
        counts = {
            "preparingNodeCount": 0,
            "runningNodeCount": 0,
            "idleNodeCount": 0,
            "unusableNodeCount": 0,
            "leavingNodeCount": 0,
            "preemptedNodeCount": 0,
            **(node_state_counts or {"idleNodeCount": current_nodes}),
        }
        inner = {
            "vmSize": vm_size,
            "vmPriority": priority,
            "scaleSettings": {
                "maxNodeCount": max_nodes,
                "minNodeCount": min_nodes,
                "nodeIdleTimeBeforeScaleDown": idle_before_scale_down,
            },
            "currentNodeCount": current_nodes,
            "targetNodeCount": current_nodes,
            "nodeStateCounts": counts,
            "allocationState": allocation_state,
            "allocationStateTransitionTime": "2026-01-05T08:00:00+00:00",
            "osType": "Linux",
            "remoteLoginPortPublicAccess": "Disabled",
            "enableNodePublicIp": True,
            "isolatedNetwork": False,
            "propertyBag": {},
        }
        self._add_compute(coords, name, "AmlCompute", inner)

    def add_instance(
        self,
        coords: AzureCoordinates,
        name: str,
        *,
        vm_size: str = "Standard_DS3_v2",
        state: str = "Running",
        assigned_user_object_id: str | None = None,
        idle_before_shutdown: str | None = "PT30M",
    ) -> None:
        inner: dict[str, Any] = {
            "vmSize": vm_size,
            "state": state,
            "applicationSharingPolicy": "Personal",
            "computeInstanceAuthorizationType": "personal",
            "sshSettings": {"sshPublicAccess": "Disabled", "adminUserName": "azureuser"},
            "errors": [],
            "lastOperation": {
                "operationName": "Start",
                "operationTime": "2026-01-05T08:00:00+00:00",
                "operationStatus": "Succeeded",
                "operationTrigger": "User",
            },
            "schedules": {"computeStartStop": []},
            "enableNodePublicIp": True,
        }
        if assigned_user_object_id:
            inner["personalComputeInstanceSettings"] = {
                "assignedUser": {
                    "objectId": assigned_user_object_id,
                    "tenantId": "72f988bf-0000-4000-8000-00000000a1b0",
                }
            }
        if idle_before_shutdown:
            inner["idleTimeBeforeShutdown"] = idle_before_shutdown
        self._add_compute(coords, name, "ComputeInstance", inner)

    def add_other_compute(self, coords: AzureCoordinates, name: str, kind: str) -> None:
        self._add_compute(coords, name, kind, {})

    def _add_compute(
        self, coords: AzureCoordinates, name: str, kind: str, inner: dict[str, Any]
    ) -> None:
        ws = self.workspace(coords)
        body = {
            "id": f"{ws.id}/computes/{name}",
            "name": name,
            "type": f"{ML}/workspaces/computes",
            "location": ws.location,
            "tags": {},
            "properties": {
                "createdOn": "2026-01-01T09:00:00+00:00",
                "modifiedOn": "2026-01-01T09:00:00+00:00",
                "disableLocalAuth": True,
                "description": None,
                "resourceId": None,
                "computeType": kind,
                "computeLocation": ws.location,
                "provisioningState": "Succeeded",
                "provisioningErrors": None,
                "isAttachedCompute": kind not in {"AmlCompute", "ComputeInstance"},
                "properties": inner,
            },
        }
        with self.lock:
            ws.computes[name.lower()] = body

    def add_user_with_mail(self, upn: str, mail: str, object_id: str | None = None) -> str:
        """A user whose e-mail (`mail`) is not their sign-in name (UPN)."""
        object_id = self.add_user(upn, object_id)
        with self.lock:
            self.mail[mail.lower()] = object_id
        return object_id

    def add_user(self, email: str, object_id: str | None = None) -> str:
        object_id = object_id or str(uuid.uuid4())
        with self.lock:
            self.users[email.lower()] = object_id
            self.principals.add(object_id)
        return object_id

    def add_principal(self, object_id: str) -> str:
        with self.lock:
            self.principals.add(object_id)
        return object_id

    def deny(self, action: str) -> None:
        """Take an action away from the bot's identity: calls needing it get 403."""
        with self.lock:
            self.denied.add(action.lower())

    # -- inspection ----------------------------------------------------------------------

    def add_role_assignment(
        self, scope: str, name: str, principal_id: str, role_definition_guid: str
    ) -> None:
        """An assignment someone made in the portal or CLI, not through the bot, in the
        shape `roleAssignments` GET and list answer with."""
        sub = scope.split("/")[2]
        assignment_id = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
        body = {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization"
                f"/roleDefinitions/{role_definition_guid}",
                "principalId": principal_id,
                "principalType": "User",
                "scope": scope,
                "description": None,
                "condition": None,
                "createdOn": "2026-01-01T00:00:00+00:00",
                "updatedOn": "2026-01-01T00:00:00+00:00",
                "createdBy": "someone-in-the-portal",
            },
            "id": assignment_id,
            "type": "Microsoft.Authorization/roleAssignments",
            "name": name,
        }
        with self.lock:
            self.role_assignments[assignment_id.lower()] = body

    def assignments(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.role_assignments.values())

    def job(self, coords: AzureCoordinates, name: str) -> dict[str, Any]:
        with self.lock:
            return self.workspace(coords).jobs[name.lower()]

    def set_job_status(self, coords: AzureCoordinates, name: str, status: str) -> None:
        with self.lock:
            self.workspace(coords).jobs[name.lower()]["properties"]["status"] = status

    def compute(self, coords: AzureCoordinates, name: str) -> dict[str, Any]:
        with self.lock:
            return self.workspace(coords).computes[name.lower()]

    def datastore(self, coords: AzureCoordinates, name: str) -> dict[str, Any]:
        with self.lock:
            return self.workspace(coords).datastores[name.lower()]

    # -- used by handlers ----------------------------------------------------------------

    def authorize(self, action: str, scope: str) -> None:
        """403 AuthorizationFailed unless the bot's role grants `action` (and it is not
        denied by the test)."""
        with self.lock:
            allowed = grants(self.bot_actions, action) and action.lower() not in self.denied
        if not allowed:
            oid = self.caller_object_id
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{oid}' with object id '{oid}' does not have authorization to "
                f"perform action '{action}' over scope '{scope}' or the scope is invalid. If "
                "access was recently granted, please refresh your credentials.",
            )

    def find_workspace(self, sub: str, rg: str, ws: str) -> WorkspaceState:
        scope = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{ML}/workspaces/{ws}").lower()
        found = self.workspaces.get(scope)
        if found is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{ML}/workspaces/{ws}' under resource group '{rg}' was not "
                "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return found


def _default_datastores(ws: WorkspaceState) -> list[dict[str, Any]]:
    def store(name: str, kind: str, extra: dict[str, Any], default: bool = False) -> dict:
        credentials = (
            {"credentialsType": "AccountKey"}
            if kind == "AzureFile"
            else {"credentialsType": "None"}
        )
        return {
            "id": f"{ws.id}/datastores/{name}",
            "name": name,
            "type": f"{ML}/workspaces/datastores",
            "properties": {
                "description": None,
                "tags": {},
                "properties": None,
                "isDefault": default,
                "credentials": credentials,
                "datastoreType": kind,
                "accountName": "stmlteam",
                "endpoint": "core.windows.net",
                "protocol": "https",
                "serviceDataAccessAuthIdentity": "None",
                **extra,
            },
        }

    return [
        store("workspaceblobstore", "AzureBlob", {"containerName": "azureml-blobstore"}, True),
        store("workspacefilestore", "AzureFile", {"fileShareName": "code-391ff5ac"}),
        store("workspaceartifactstore", "AzureBlob", {"containerName": "azureml"}),
        store("workspaceworkingdirectory", "AzureFile", {"fileShareName": "code-391ff5ac"}),
    ]
