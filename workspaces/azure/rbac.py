"""Cluster access: role assignments (or PIM schedule requests) made and removed by name.

The assignment's name is the request's deterministic UUID (`RoleGrantSpec.assignment_name`),
so a retried grant lands on the same assignment and a revocation always finds it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.errors import NotFoundError, PermissionDeniedError, WorkspaceError
from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.errors import azure_error_parts, translated
from workspaces.types import AccessAssignment, GrantReceipt, RoleGrantSpec

_GUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$", re.IGNORECASE)
PROPAGATION_NOTE = (
    "Azure applies role changes within about 10 minutes, so access may take that long to "
    "start working."
)
# PIM removal requests need names of their own; derived, so a retried revoke reuses one.
_REMOVAL_NAMESPACE = uuid.UUID("5b7c1f0e-5a3d-4f51-9d7e-2f3a9e7b0c11")
_EXTENSION_NAMESPACE = uuid.UUID("8e2d4a6c-1f3b-4c5d-a7e9-0b1c2d3e4f50")
# Azure keeps every schedule request by name and answers 409 with this code when a name is
# used again. Our names derive from what the request does, so it means "already done".
_REQUEST_EXISTS = "RoleAssignmentRequestExists"


def extension_request_name(assignment_name: str, new_expiry: datetime) -> str:
    """The PIM request extending `assignment_name` to `new_expiry`: a retry reuses it."""
    ends = new_expiry.astimezone(UTC).isoformat()
    return str(uuid.uuid5(_EXTENSION_NAMESPACE, f"{assignment_name}:{ends}"))


class RoleAccess:
    """Grants and revokes for one workspace, with role names and people resolved once."""

    def __init__(self, clients: WorkspaceClients) -> None:
        self._clients = clients
        self._role_ids: dict[tuple[str, str], str] = {}  # (scope, role name) -> definition id
        self._object_ids: dict[str, str] = {}  # e-mail -> Entra ID object id
        self._lock = threading.Lock()

    # -- resolution ----------------------------------------------------------------------

    def scope_for(self, grant: RoleGrantSpec) -> str:
        coords = self._clients.coordinates
        if grant.scope == "compute":
            return coords.compute_scope(grant.compute)
        if grant.scope == "workspace":
            return coords.workspace_scope
        raise WorkspaceError(
            f"Unknown role assignment scope '{grant.scope}'; policy `access.scope` must be "
            "'compute' or 'workspace'."
        )

    def role_definition_id(self, scope: str, role_name: str) -> str:
        key = (scope.lower(), role_name)
        with self._lock:
            cached = self._role_ids.get(key)
        if cached is not None:
            return cached
        auth = self._clients.authorization()
        with translated(f"looking up the role '{role_name}'"):
            found = [
                definition.id
                for definition in auth.role_definitions.list(
                    scope, filter=f"roleName eq '{role_name}'"
                )
            ]
        if not found:
            raise NotFoundError(
                f"No role named '{role_name}' is defined at {scope}. Check policy `access.role` "
                "(e.g. 'AzureML Data Scientist' or a custom role's exact name)."
            )
        with self._lock:
            self._role_ids[key] = str(found[0])
        return str(found[0])

    def object_id(self, principal: str) -> str:
        """The Entra ID object id for an object id or an e-mail (via Microsoft Graph)."""
        if _GUID.match(principal):
            return principal
        if "@" not in principal:
            raise WorkspaceError(
                f"'{principal}' is neither an Entra ID object id nor an e-mail address."
            )
        with self._lock:
            cached = self._object_ids.get(principal.lower())
        if cached is not None:
            return cached
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            user = self._clients.graph().request(
                "GET", f"/v1.0/users/{principal}", params={"$select": "id"}
            )
        except ResourceNotFoundError:
            # The path takes a sign-in name (UPN); many people's e-mail differs from it.
            user = self._user_by_mail(principal)
        except HttpResponseError as error:
            if error.status_code == 403:
                raise PermissionDeniedError(
                    f"The bot may not look up {principal} in Microsoft Graph (it needs the "
                    "User.Read.All application permission); add their `object_id` to the "
                    "configuration instead."
                ) from None
            with translated(f"looking up {principal} in Microsoft Graph"):
                raise
            raise  # pragma: no cover - translated() always raises
        object_id = str(user["id"])
        with self._lock:
            self._object_ids[principal.lower()] = object_id
        return object_id

    def _user_by_mail(self, email: str) -> dict[str, Any]:
        escaped = email.replace("'", "''")
        found = self._clients.graph().request(
            "GET", "/v1.0/users", params={"$filter": f"mail eq '{escaped}'", "$select": "id"}
        )
        users = found.get("value", []) if isinstance(found, dict) else []
        if len(users) != 1:
            raise NotFoundError(
                f"Microsoft Graph knows no user {email} (by sign-in name or e-mail); add their "
                "`object_id` to the configuration."
            )
        return dict(users[0])

    # -- grant and revoke ----------------------------------------------------------------

    def grant(self, grant: RoleGrantSpec) -> GrantReceipt:
        scope = self.scope_for(grant)
        doing = f"granting '{grant.role_name}' on {grant.compute}"
        principal = self.object_id(grant.principal_object_id)
        role_id = self.role_definition_id(scope, grant.role_name)
        if grant.mode == "pim":
            return self._grant_pim(grant, scope, principal, role_id, doing)
        if grant.mode != "rbac":
            raise WorkspaceError(f"Unknown access mode '{grant.mode}'; use 'rbac' or 'pim'.")
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        auth = self._clients.authorization()
        assignment_id = (
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{grant.assignment_name}"
        )
        note = PROPAGATION_NOTE
        with translated(doing):
            try:
                created = auth.role_assignments.create(
                    scope,
                    grant.assignment_name,
                    RoleAssignmentCreateParameters(
                        role_definition_id=role_id,
                        principal_id=principal,
                        # Naming the type lets Azure skip the directory look-up that fails
                        # for principals created moments ago.
                        principal_type="User",
                        description=grant.description,
                    ),
                )
                assignment_id = created.id or assignment_id
            except HttpResponseError as error:
                if azure_error_parts(error)[1] != "RoleAssignmentExists":
                    raise
                note = (
                    "They already hold this role here through another role assignment, "
                    "which the bot did not make and will not remove."
                )
        return GrantReceipt(
            assignment_id=assignment_id, scope=scope, role_name=grant.role_name, note=note
        )

    def _grant_pim(
        self, grant: RoleGrantSpec, scope: str, principal: str, role_id: str, doing: str
    ) -> GrantReceipt:
        models = self._pim_models()
        auth = self._clients.authorization()
        request = models.RoleAssignmentScheduleRequest(
            principal_id=principal,
            role_definition_id=role_id,
            request_type="AdminAssign",
            justification=grant.description,
            schedule_info=models.RoleAssignmentScheduleRequestPropertiesScheduleInfo(
                start_date_time=datetime.now(UTC),
                expiration=models.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration(
                    type="AfterDateTime", end_date_time=grant.expires_at
                ),
            ),
        )
        from azure.core.exceptions import HttpResponseError

        with translated(doing + " through PIM"):
            try:
                created = auth.role_assignment_schedule_requests.create(
                    scope, grant.assignment_name, request
                )
            except HttpResponseError as error:
                # The name derives from the request: Azure ran this very request before
                # (a retry after an interruption), so the grant exists. Read it back.
                if azure_error_parts(error)[1] != _REQUEST_EXISTS:
                    raise
                created = auth.role_assignment_schedule_requests.get(scope, grant.assignment_name)
        ends = grant.expires_at.isoformat(timespec="minutes")
        return GrantReceipt(
            assignment_id=created.id or grant.assignment_name,
            scope=scope,
            role_name=grant.role_name,
            note=f"{PROPAGATION_NOTE} Azure ends it by itself at {ends}.",
        )

    def extend(self, grant: RoleGrantSpec, new_expiry: datetime) -> GrantReceipt:
        scope = self.scope_for(grant)
        assignment_id = (
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{grant.assignment_name}"
        )
        ends = new_expiry.isoformat(timespec="minutes")
        if grant.mode == "rbac":
            # A plain role assignment has no end in Azure: the bot removes it at the expiry
            # it keeps, so there is nothing to tell Azure.
            return GrantReceipt(
                assignment_id=assignment_id,
                scope=scope,
                role_name=grant.role_name,
                note=f"The bot removes it at {ends}.",
            )
        if grant.mode != "pim":
            raise WorkspaceError(f"Unknown access mode '{grant.mode}'; use 'rbac' or 'pim'.")
        self._extend_pim(grant, scope, new_expiry)
        return GrantReceipt(
            assignment_id=assignment_id,
            scope=scope,
            role_name=grant.role_name,
            note=f"Azure now ends it by itself at {ends}.",
        )

    def _extend_pim(self, grant: RoleGrantSpec, scope: str, new_expiry: datetime) -> None:
        from azure.core.exceptions import HttpResponseError

        models = self._pim_models()
        auth = self._clients.authorization()
        principal = self.object_id(grant.principal_object_id)
        role_id = self.role_definition_id(scope, grant.role_name)
        request = models.RoleAssignmentScheduleRequest(
            principal_id=principal,
            role_definition_id=role_id,
            # Not a second AdminAssign: Azure refuses one while the first is active
            # (RoleAssignmentExists). Of the request types for an admin changing an existing
            # assignment, Microsoft documents AdminExtend as "for administrators to extend
            # expiring assignments" (Graph's unifiedRoleAssignmentScheduleRequest `action`,
            # the same set as ARM's RequestType), AdminRenew for expired ones and AdminUpdate
            # for changing an assignment; the bot offers Extend only as a grant nears its end.
            request_type="AdminExtend",
            justification=f"amlbot extended: {grant.description}",
            schedule_info=models.RoleAssignmentScheduleRequestPropertiesScheduleInfo(
                start_date_time=datetime.now(UTC),
                expiration=models.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration(
                    type="AfterDateTime", end_date_time=new_expiry
                ),
            ),
        )
        name = extension_request_name(grant.assignment_name, new_expiry)
        with translated(f"extending '{grant.role_name}' on {grant.compute} through PIM"):
            try:
                auth.role_assignment_schedule_requests.create(scope, name, request)
            except HttpResponseError as error:
                code = azure_error_parts(error)[1]
                if code == "RoleAssignmentDoesNotExist":
                    raise NotFoundError(
                        f"Azure holds no active '{grant.role_name}' assignment on "
                        f"{grant.compute} to extend: it ended (PIM ends it at its expiry) or "
                        "was removed. Ask for access again."
                    ) from None
                if code != _REQUEST_EXISTS:
                    raise

    def revoke(self, grant: RoleGrantSpec) -> None:
        scope = self.scope_for(grant)
        doing = f"removing '{grant.role_name}' on {grant.compute}"
        if grant.mode == "pim":
            self._revoke_pim(grant, scope, doing)
            return
        from azure.core.exceptions import ResourceNotFoundError

        auth = self._clients.authorization()
        # Azure answers 204 when the assignment is already gone: that is revoked too.
        with translated(doing), contextlib.suppress(ResourceNotFoundError):
            auth.role_assignments.delete(scope, grant.assignment_name)

    def exists(self, grant: RoleGrantSpec) -> bool:
        """Read the assignment back by name (`roleAssignments/read`): is it still there?"""
        from azure.core.exceptions import ResourceNotFoundError

        scope = self.scope_for(grant)
        auth = self._clients.authorization()
        with translated(f"reading back the assignment on {grant.compute or 'the workspace'}"):
            try:
                auth.role_assignments.get(scope, grant.assignment_name)
            except ResourceNotFoundError:
                return False
        return True

    def list_at_workspace(self, role_name: str) -> list[AccessAssignment]:
        """Assignments of `role_name` at the workspace's scope and its computes' scopes.

        One `role_assignments.list_for_scope` at the workspace's scope: Azure answers with
        the assignments at, above and below it (every page); those above (subscription,
        resource group) are not the workspace's to judge and are left out."""
        coords = self._clients.coordinates
        workspace = coords.workspace_scope
        definition = self.role_definition_id(workspace, role_name).rsplit("/", 1)[-1].lower()
        auth = self._clients.authorization()
        with translated(f"listing role assignments on workspace {coords.workspace_name}"):
            found = list(auth.role_assignments.list_for_scope(workspace))
        computes = f"{workspace}/computes/".lower()
        out = []
        for assignment in found:
            scope = str(assignment.scope or "")
            if str(assignment.role_definition_id or "").rsplit("/", 1)[-1].lower() != definition:
                continue
            if scope.lower() == workspace.lower():
                compute = None
            elif scope.lower().startswith(computes) and "/" not in scope[len(computes) :]:
                compute = scope[len(computes) :]
            else:
                continue
            out.append(
                AccessAssignment(
                    assignment_name=str(assignment.name),
                    assignment_id=str(assignment.id),
                    principal_object_id=str(assignment.principal_id),
                    role_name=role_name,
                    compute=compute,
                )
            )
        return out

    def _revoke_pim(self, grant: RoleGrantSpec, scope: str, doing: str) -> None:
        from azure.core.exceptions import HttpResponseError

        models = self._pim_models()
        auth = self._clients.authorization()
        principal = self.object_id(grant.principal_object_id)
        role_id = self.role_definition_id(scope, grant.role_name)
        name = str(uuid.uuid5(_REMOVAL_NAMESPACE, grant.assignment_name))
        with translated(doing + " through PIM"):
            try:
                auth.role_assignment_schedule_requests.create(
                    scope,
                    name,
                    models.RoleAssignmentScheduleRequest(
                        principal_id=principal,
                        role_definition_id=role_id,
                        request_type="AdminRemove",
                        justification=f"amlbot revoked: {grant.description}",
                    ),
                )
            except HttpResponseError as error:
                # Ended by Azure at its expiry, removed by someone, or removed by an earlier
                # try of this revoke (same request name): revoked all the same.
                if azure_error_parts(error)[1] not in {
                    "RoleAssignmentDoesNotExist",
                    _REQUEST_EXISTS,
                }:
                    raise

    @staticmethod
    def _pim_models() -> Any:
        from azure.mgmt.authorization.v2020_10_01 import models

        return models
