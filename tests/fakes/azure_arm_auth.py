"""Microsoft.Authorization, Microsoft Graph users and a managed-identity endpoint, faked.

Shapes: the 2022-04-01 REST examples (`RoleAssignments_CreateForResource.json`,
`RoleAssignments_Delete.json` with its 200/204, `GetRoleDefinitionByName.json`) and
Azure's documented error codes (PrincipalNotFound, RoleAssignmentExists,
RoleAssignmentUpdateNotPermitted, RoleAssignmentLimitExceeded, AadPremiumLicenseRequired).
PIM schedule requests (2020-10-01): AdminAssign, AdminExtend (only of an active time-bound
assignment, else RoleAssignmentDoesNotExist) and AdminRemove; a request name used twice is
refused with 409 RoleAssignmentRequestExists ("A role assignment request with Id: … already
exists."), as Azure answers a PUT it has already run.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.azure_arm_state import (
    BOT_ROLE_ID,
    BUILTIN_ROLES,
    ML,
    ArmError,
    FakeResponse,
    shipped_role_actions,
)
from tests.fakes.azure_credential import TEST_TENANT_ID, jwt_for

if TYPE_CHECKING:
    from tests.fakes.azure_arm import FakeAzure, Request

AUTH = "/providers/Microsoft.Authorization"
SCOPE = r"(?P<scope>/subscriptions/[^/]+(?:/.+?)?)"
RBAC_VERSIONS = {"2022-04-01"}
PIM_VERSIONS = {"2020-10-01"}
MSI_PATH = "/msi/token"
MSI_SECRET = "fake-identity-header"
_GUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$", re.IGNORECASE)


def register(fake: FakeAzure) -> None:
    route = fake.route
    route(
        "GET",
        f"{SCOPE}{AUTH}/roleDefinitions",
        list_role_definitions,
        api_versions=RBAC_VERSIONS,
        action="Microsoft.Authorization/roleDefinitions/read",
    )
    route(
        "GET",
        f"{SCOPE}{AUTH}/roleDefinitions/(?P<guid>[^/]+)",
        get_role_definition,
        api_versions=RBAC_VERSIONS,
        action="Microsoft.Authorization/roleDefinitions/read",
    )
    route(
        "GET",
        f"{SCOPE}{AUTH}/roleAssignments",
        list_role_assignments,
        api_versions=RBAC_VERSIONS,
        action="Microsoft.Authorization/roleAssignments/read",
    )
    assignment = f"{SCOPE}{AUTH}/roleAssignments/(?P<name>[^/]+)"
    for method, handler, verb in (
        ("PUT", put_role_assignment, "write"),
        ("GET", get_role_assignment, "read"),
        ("DELETE", delete_role_assignment, "delete"),
    ):
        route(
            method,
            assignment,
            handler,
            api_versions=RBAC_VERSIONS,
            action=f"Microsoft.Authorization/roleAssignments/{verb}",
        )
    schedule_request = f"{SCOPE}{AUTH}/roleAssignmentScheduleRequests/(?P<name>[^/]+)"
    for method, handler, verb in (
        ("PUT", put_schedule_request, "write"),
        ("GET", get_schedule_request, "read"),
    ):
        route(
            method,
            schedule_request,
            handler,
            api_versions=PIM_VERSIONS,
            action=f"Microsoft.Authorization/roleAssignmentScheduleRequests/{verb}",
        )
    # Any caller may list its own permissions; Graph and the token endpoint are not ARM.
    route("GET", f"{SCOPE}{AUTH}/permissions", list_permissions, api_versions=RBAC_VERSIONS)
    route("GET", r"/v1\.0/users/(?P<user>[^/]+)", get_graph_user, api_versions=None)
    route("GET", r"/v1\.0/users", list_graph_users, api_versions=None)
    route("GET", MSI_PATH, managed_identity_token, api_versions=None, audience="none")


def _subscription(scope: str) -> str:
    return scope.split("/")[2]


def _check_scope(fake: FakeAzure, scope: str) -> None:
    """A role can only be assigned at a scope that exists (404 otherwise, like ARM)."""
    match = re.match(
        rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/{ML}/workspaces/([^/]+)"
        r"(?:/computes/([^/]+))?$",
        scope,
        re.IGNORECASE,
    )
    if match is None:
        return  # subscription and resource group scopes: not modelled, accepted
    sub, rg, ws_name, compute = match.groups()
    ws = fake.find_workspace(sub, rg, ws_name)
    if compute and compute.lower() not in ws.computes:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{ML}/workspaces/{ws_name}/computes/{compute}' under resource "
            f"group '{rg}' was not found.",
        )


def _definition_id(sub: str, guid: str) -> str:
    return f"/subscriptions/{sub}{AUTH}/roleDefinitions/{guid}"


def list_role_definitions(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    wanted = None
    found = re.match(r"^roleName eq '(.+)'$", request.query.get("$filter", ""))
    if found:
        wanted = found.group(1)
    sub = _subscription(m["scope"])
    items = [
        {
            "id": _definition_id(sub, guid),
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": guid,
            "properties": {
                "roleName": name,
                "type": "BuiltInRole",
                "description": f"{name} (built-in)",
                "assignableScopes": ["/"],
                "permissions": [
                    {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}
                ],
            },
        }
        for name, guid in BUILTIN_ROLES.items()
        if wanted is None or name == wanted
    ]
    return fake.page(request, items)


def get_role_definition(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    guid = m["guid"].lower()
    sub = _subscription(m["scope"])
    if guid == BOT_ROLE_ID:
        name, kind, actions = "amlbot operator", "CustomRole", shipped_role_actions()
    else:
        found = [n for n, g in BUILTIN_ROLES.items() if g == guid]
        if not found:
            raise ArmError(404, "RoleDefinitionDoesNotExist", "The role definition does not exist.")
        name, kind, actions = found[0], "BuiltInRole", ["*"]
    return FakeResponse(
        200,
        {
            "id": _definition_id(sub, guid),
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": guid,
            "properties": {
                "roleName": name,
                "type": kind,
                "assignableScopes": ["/"],
                "permissions": [
                    {"actions": actions, "notActions": [], "dataActions": [], "notDataActions": []}
                ],
            },
        },
    )


def list_role_assignments(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """`$filter=principalId eq '...'`: that principal's assignments at, above or below the
    scope (as Azure answers); without a filter, all of them there."""
    scope = m["scope"].lower()
    found = re.fullmatch(r"principalId eq '([^']+)'", request.query.get("$filter", ""))
    if request.query.get("$filter") and found is None:
        raise ArmError(400, "UnsupportedQuery", "The filter is not supported.")
    with fake.lock:
        items = [*_bot_assignments(fake), *fake.role_assignments.values()]
    related = [
        copy.deepcopy(a)
        for a in items
        if (own := a["properties"]["scope"].lower()) == scope
        or scope.startswith(own + "/")
        or own.startswith(scope + "/")
    ]
    if found:
        related = [a for a in related if a["properties"]["principalId"] == found.group(1)]
    return fake.page(request, related)


def _bot_assignments(fake: FakeAzure) -> list[dict[str, Any]]:
    """The bot's own assignments, with the condition the test has set on them."""
    out = []
    for body in fake.bot_assignments.values():
        body = copy.deepcopy(body)
        body["properties"]["condition"] = fake.bot_condition
        body["properties"]["conditionVersion"] = fake.bot_condition_version
        out.append(body)
    return out


def _enforce_condition(
    fake: FakeAzure, action: str, target: str, role_id: str, principal_type: str
) -> None:
    """Azure ABAC on the bot's own assignment: a role assignment write (the request's role
    and principal type) or delete (the existing assignment's) outside the condition's lists
    is refused as if the permission were missing."""
    with fake.lock:
        condition = fake.bot_condition
        covering = [
            s
            for s in fake.bot_assignments
            if target.lower() == s or target.lower().startswith(s + "/")
        ]
    if not covering or not condition:
        return
    verb = action.rsplit("/", 1)[-1]
    source = "Request" if verb == "write" else "Resource"
    block = re.search(
        rf"ActionMatches\{{'Microsoft\.Authorization/roleAssignments/{verb}'\}}\s*\)\s*\)"
        r"\s*OR\s*\(([^()]*)\)",
        condition,
        re.IGNORECASE,
    )
    roles = types = None
    if block:
        body = block.group(1)
        r = re.search(rf"@{source}\[[^\]]*:RoleDefinitionId\][^{{]*\{{([^}}]*)\}}", body)
        t = re.search(rf"@{source}\[[^\]]*:PrincipalType\][^{{]*\{{([^}}]*)\}}", body)
        roles = {x.strip().lower() for x in r.group(1).split(",")} if r else None
        types = {x.strip().strip("'").lower() for x in t.group(1).split(",")} if t else None
    allowed = (roles is None or role_id.lower() in roles) and (
        types is None or principal_type.lower() in types
    )
    if not allowed:
        oid = fake.caller_object_id
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{oid}' with object id '{oid}' does not have authorization to perform "
            f"action '{action}' over scope '{target}' or the scope is invalid. If access was "
            "recently granted, please refresh your credentials.",
        )


def _validate_assignment_body(fake: FakeAzure, body: Any) -> dict[str, Any]:
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content needs `properties`.")
    definition = str(props.get("roleDefinitionId", ""))
    if definition.rsplit("/", 1)[-1] not in BUILTIN_ROLES.values():
        raise ArmError(
            400, "RoleDefinitionDoesNotExist", "The specified role definition does not exist."
        )
    principal = str(props.get("principalId", ""))
    if not _GUID.match(principal):
        raise ArmError(400, "InvalidPrincipalId", "A valid principal ID must be provided.")
    if principal not in fake.principals:
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal.replace('-', '')} does not exist in the directory "
            f"{TEST_TENANT_ID}. Check that you have the correct principal ID.",
        )
    return props


def put_role_assignment(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    scope, name = m["scope"], m["name"]
    _check_scope(fake, scope)
    props = _validate_assignment_body(fake, request.body)
    assignment_id = f"{scope}{AUTH}/roleAssignments/{name}"
    _enforce_condition(
        fake,
        "Microsoft.Authorization/roleAssignments/write",
        assignment_id,
        props["roleDefinitionId"].rsplit("/", 1)[-1],
        str(props.get("principalType") or ""),
    )
    key = (props["principalId"], props["roleDefinitionId"].rsplit("/", 1)[-1], scope.lower())
    with fake.lock:
        existing = fake.role_assignments.get(assignment_id.lower())
        if existing is not None:
            if _assignment_key(existing) != key:
                raise ArmError(
                    409,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be "
                    "updated.",
                )
            return FakeResponse(201, copy.deepcopy(existing))
        if any(_assignment_key(other) == key for other in fake.role_assignments.values()):
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
        if len(fake.role_assignments) >= fake.role_assignment_limit:
            raise ArmError(
                400,
                "RoleAssignmentLimitExceeded",
                f"No more role assignments can be created in subscription "
                f"{_subscription(scope)}. Remove unused role assignments and try again.",
            )
        now = datetime.now(UTC).isoformat()
        body = {
            "properties": {
                "roleDefinitionId": props["roleDefinitionId"],
                "principalId": props["principalId"],
                "principalType": props.get("principalType", "User"),
                "scope": scope,
                "description": props.get("description"),
                "condition": None,
                "createdOn": now,
                "updatedOn": now,
                "createdBy": fake.caller_object_id,
            },
            "id": assignment_id,
            "type": "Microsoft.Authorization/roleAssignments",
            "name": name,
        }
        fake.role_assignments[assignment_id.lower()] = body
    return FakeResponse(201, copy.deepcopy(body))


def _assignment_key(body: dict[str, Any]) -> tuple[str, str, str]:
    props = body["properties"]
    return (
        props["principalId"],
        props["roleDefinitionId"].rsplit("/", 1)[-1],
        props["scope"].lower(),
    )


def get_role_assignment(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    assignment_id = f"{m['scope']}{AUTH}/roleAssignments/{m['name']}".lower()
    with fake.lock:
        found = fake.role_assignments.get(assignment_id)
    if found is None:
        raise ArmError(404, "RoleAssignmentNotFound", "The role assignment was not found.")
    return FakeResponse(200, copy.deepcopy(found))


def delete_role_assignment(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    assignment_id = f"{m['scope']}{AUTH}/roleAssignments/{m['name']}".lower()
    with fake.lock:
        existing = fake.role_assignments.get(assignment_id)
    if existing is not None:
        props = existing["properties"]
        _enforce_condition(
            fake,
            "Microsoft.Authorization/roleAssignments/delete",
            existing["id"],
            props["roleDefinitionId"].rsplit("/", 1)[-1],
            props.get("principalType") or "",
        )
    with fake.lock:
        if m["name"].lower() in fake.lagging_deletes:
            # Acknowledged, not (yet) carried out: only reading back tells.
            return FakeResponse(200, copy.deepcopy(existing))
        found = fake.role_assignments.pop(assignment_id, None)
    if found is None:
        return FakeResponse(204, None)  # Azure: 204 when there was nothing to delete
    return FakeResponse(200, found)


def put_schedule_request(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    scope = m["scope"]
    if not fake.pim_licensed:
        raise ArmError(
            400,
            "AadPremiumLicenseRequired",
            "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance "
            "license.",
        )
    _check_scope(fake, scope)
    props = _validate_assignment_body(fake, request.body)
    request_type = props.get("requestType")
    if request_type not in {"AdminAssign", "AdminExtend", "AdminRemove"}:
        raise ArmError(400, "InvalidRequestType", f"Unsupported requestType {request_type!r}.")
    key = (props["principalId"], props["roleDefinitionId"].rsplit("/", 1)[-1], scope.lower())
    request_id = f"{scope}{AUTH}/roleAssignmentScheduleRequests/{m['name']}"
    with fake.lock:
        if request_id.lower() in fake.schedule_requests:
            # Azure keeps every request by name and never runs a name twice.
            raise ArmError(
                409,
                "RoleAssignmentRequestExists",
                f"A role assignment request with Id: {m['name']} already exists.",
            )
        linked = [k for k, v in fake.role_assignments.items() if _assignment_key(v) == key]
        if request_type in {"AdminAssign", "AdminExtend"}:
            expiration = (props.get("scheduleInfo") or {}).get("expiration") or {}
            if expiration.get("type") != "AfterDateTime" or not expiration.get("endDateTime"):
                raise ArmError(
                    400,
                    "ExpirationRule",
                    'The following policy rules failed: ["ExpirationRule"]',
                )
        if request_type == "AdminExtend":
            now = fake.now()
            active = [
                k
                for k in linked
                if (end := fake.role_assignments[k]["properties"].get("endDateTime"))
                and datetime.fromisoformat(end) > now
            ]
            if not active:  # none, a permanent one, or one PIM has ended
                raise ArmError(
                    400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist."
                )
            for k in active:
                fake.role_assignments[k]["properties"]["endDateTime"] = expiration["endDateTime"]
        elif request_type == "AdminAssign":
            if linked:
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
            assignment_id = f"{scope}{AUTH}/roleAssignments/{m['name']}"
            fake.role_assignments[assignment_id.lower()] = {
                "id": assignment_id,
                "name": m["name"],
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": {
                    "roleDefinitionId": props["roleDefinitionId"],
                    "principalId": props["principalId"],
                    "principalType": "User",
                    "scope": scope,
                    "description": props.get("justification"),
                    "endDateTime": expiration["endDateTime"],
                },
            }
        else:
            if not linked:
                raise ArmError(
                    400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist."
                )
            for k in linked:
                fake.role_assignments.pop(k)
        body = {
            "id": request_id,
            "name": m["name"],
            "type": "Microsoft.Authorization/RoleAssignmentScheduleRequests",
            "properties": {
                **props,
                "scope": scope,
                "status": "Provisioned",
                "createdOn": fake.now().isoformat(),
            },
        }
        fake.schedule_requests[body["id"].lower()] = body
    return FakeResponse(201, copy.deepcopy(body))


def get_schedule_request(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    scope = m["scope"]
    request_id = f"{scope}{AUTH}/roleAssignmentScheduleRequests/{m['name']}"
    with fake.lock:
        body = fake.schedule_requests.get(request_id.lower())
        if body is None:
            raise ArmError(404, "RoleAssignmentScheduleRequestNotFound", "Request not found.")
        return FakeResponse(200, copy.deepcopy(body))


def list_permissions(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    with fake.lock:
        denied = set(fake.denied)
        actions = [a for a in fake.bot_actions if a.lower() not in denied]
    # A denied action still covered by a wildcard shows up in notActions, as Azure does.
    not_actions = [d for d in denied if any(fnmatch.fnmatch(d, a.lower()) for a in actions)]
    return fake.page(
        request,
        [{"actions": actions, "notActions": not_actions, "dataActions": [], "notDataActions": []}],
    )


def get_graph_user(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    user = m["user"].lower()
    with fake.lock:
        object_id = fake.users.get(user) or (user if user in fake.principals else None)
    if object_id is None:
        return FakeResponse(
            404,
            {
                "error": {
                    "code": "Request_ResourceNotFound",
                    "message": f"Resource '{m['user']}' does not exist or one of its queried "
                    "reference-property objects are not present.",
                }
            },
        )
    return FakeResponse(200, {"id": object_id, "userPrincipalName": m["user"]})


def list_graph_users(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """`GET /users?$filter=mail eq 'x'`, the only filter the bot uses."""
    match = re.fullmatch(r"mail eq '([^']+)'", request.query.get("$filter", ""))
    if match is None:
        return FakeResponse(
            400, {"error": {"code": "BadRequest", "message": "unsupported $filter"}}
        )
    with fake.lock:
        object_id = fake.mail.get(match.group(1).lower())
    value = [{"id": object_id, "mail": match.group(1)}] if object_id else []
    return FakeResponse(200, {"value": value})


def managed_identity_token(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """The App Service managed-identity protocol azure-identity speaks (api 2019-08-01)."""
    if request.headers.get("x-identity-header") != MSI_SECRET:
        return FakeResponse(401, {"error": "invalid_request", "error_description": "bad header"})
    resource = request.query.get("resource", "")
    return FakeResponse(
        200,
        {
            "access_token": jwt_for(resource),
            "expires_on": str(int(time.time()) + 3600),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": "a0a0a0a0-0000-4000-8000-0000000000a0",
        },
    )
