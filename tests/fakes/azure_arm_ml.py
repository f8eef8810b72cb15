"""The Azure ML resource provider of the fake: workspace, computes, datastores, jobs.

Shapes: `shared/fixtures/azure/*_recorded.json` and the 2024-04-01 REST examples
(`Compute/list.json`, `Compute/stop.json`, `Compute/patch.json`, `Datastore/`, `Job/`).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.azure_arm_state import ML, ArmError, FakeResponse, WorkspaceState

if TYPE_CHECKING:
    from tests.fakes.azure_arm import FakeAzure, Request
    from workspaces.types import AzureCoordinates

WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    rf"/providers/{ML}/workspaces/(?P<ws>[^/]+)"
)
# The api-versions azure-ai-ml 1.35 and amlbot's own calls use, plus the stable 2024-04-01.
WORKSPACE_VERSIONS = {
    "2024-04-01",
    "2023-08-01-preview",
    "2024-10-01-preview",
    "2025-01-01-preview",
}
COMPUTE_VERSIONS = {"2024-04-01", "2023-08-01-preview", "2024-04-01-preview"}
DATASTORE_VERSIONS = {"2024-04-01", "2024-10-01-preview", "2023-04-01-preview"}
JOB_VERSIONS = {"2024-04-01", "2023-04-01-preview", "2025-01-01-preview", "2024-01-01-preview"}
JOB_TYPES = {"Command"}
DATASTORE_FIELDS = {
    "AzureBlob": "containerName",
    "AzureDataLakeGen2": "filesystem",
    "AzureFile": "fileShareName",
}


W = f"{ML}/workspaces"  # the actions' prefix


def register(fake: FakeAzure) -> None:
    # The operation-status URLs of long-running operations carry no action: Azure lets the
    # caller that started an operation poll it.
    route = fake.route
    route("GET", WS, get_workspace, api_versions=WORKSPACE_VERSIONS, action=f"{W}/read")
    route(
        "GET",
        f"{WS}/computes",
        list_computes,
        api_versions=COMPUTE_VERSIONS,
        action=f"{W}/computes/read",
    )
    route(
        "GET",
        f"{WS}/computes/(?P<name>[^/]+)",
        get_compute,
        api_versions=COMPUTE_VERSIONS,
        action=f"{W}/computes/read",
    )
    route(
        "PATCH",
        f"{WS}/computes/(?P<name>[^/]+)",
        patch_compute,
        api_versions=COMPUTE_VERSIONS,
        action=f"{W}/computes/write",
    )
    route(
        "PUT",
        f"{WS}/computes/(?P<name>[^/]+)",
        put_compute,
        api_versions=COMPUTE_VERSIONS,
        action=f"{W}/computes/write",
    )
    route(
        "POST",
        f"{WS}/computes/(?P<name>[^/]+)/stop",
        stop_compute,
        api_versions=COMPUTE_VERSIONS,
        action=f"{W}/computes/stop/action",
    )
    status = rf"/subscriptions/[^/]+/providers/{ML}/locations/[^/]+"
    route(
        "GET",
        f"{status}/computeOperationsStatus/(?P<op>[^/]+)",
        lambda f, r, m: f.poll_lro(m["op"], style="async"),
        api_versions={"2024-04-01"},
    )
    route(
        "GET",
        f"{status}/mfeOperationResults/(?P<op>[^/]+)",
        lambda f, r, m: f.poll_lro(m["op"], style="location"),
        api_versions={"2024-04-01"},
    )
    route(
        "GET",
        f"{WS}/datastores",
        list_datastores,
        api_versions=DATASTORE_VERSIONS,
        action=f"{W}/datastores/read",
    )
    route(
        "GET",
        f"{WS}/datastores/(?P<name>[^/]+)",
        get_datastore,
        api_versions=DATASTORE_VERSIONS,
        action=f"{W}/datastores/read",
    )
    route(
        "PUT",
        f"{WS}/datastores/(?P<name>[^/]+)",
        put_datastore,
        api_versions=DATASTORE_VERSIONS,
        action=f"{W}/datastores/write",
    )
    route("GET", f"{WS}/jobs", list_jobs, api_versions=JOB_VERSIONS, action=f"{W}/jobs/read")
    route(
        "GET",
        f"{WS}/jobs/(?P<name>[^/]+)",
        get_job,
        api_versions=JOB_VERSIONS,
        action=f"{W}/jobs/read",
    )
    route(
        "PUT",
        f"{WS}/jobs/(?P<name>[^/]+)",
        put_job,
        api_versions=JOB_VERSIONS,
        action=f"{W}/jobs/write",
    )
    route(
        "POST",
        f"{WS}/jobs/(?P<name>[^/]+)/cancel",
        cancel_job,
        api_versions=JOB_VERSIONS,
        action=f"{W}/jobs/cancel/action",
    )


def _ws(fake: FakeAzure, m: dict[str, str]) -> WorkspaceState:
    return fake.find_workspace(m["sub"], m["rg"], m["ws"])


def _now() -> str:
    return datetime.now(UTC).isoformat()


# -- workspace ---------------------------------------------------------------------------


def get_workspace(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    rg = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}/providers"
    return FakeResponse(
        200,
        {
            "id": ws.id,
            "name": ws.coordinates.workspace_name,
            "type": f"{ML}/workspaces",
            "location": ws.location,
            "tags": {},
            "identity": {
                "type": "SystemAssigned",
                "principalId": "0a0a0a0a-0000-4000-8000-00000000000a",
                "tenantId": "72f988bf-0000-4000-8000-00000000a1b0",
            },
            "sku": {"name": "Basic", "tier": "Basic"},
            "kind": "Default",
            "properties": {
                "friendlyName": ws.coordinates.workspace_name,
                "workspaceId": "3a1b2c3d-0000-4000-8000-00000000ws01",
                "storageAccount": f"{rg}/Microsoft.Storage/storageAccounts/stmlteam",
                "keyVault": f"{rg}/Microsoft.Keyvault/vaults/kv-mlteam",
                "applicationInsights": f"{rg}/Microsoft.insights/components/appi-mlteam",
                "containerRegistry": None,
                "discoveryUrl": f"{fake.base_url}/discovery",
                "mlFlowTrackingUri": f"azureml://{ws.location}.api.azureml.ms/mlflow/v1.0{ws.id}",
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
                "hbiWorkspace": False,
                "v1LegacyMode": False,
            },
        },
    )


# -- computes ----------------------------------------------------------------------------


def list_computes(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        items = [copy.deepcopy(ws.computes[key]) for key in sorted(ws.computes)]
    return fake.page(request, items)


def _compute(ws: WorkspaceState, name: str) -> dict[str, Any]:
    found = ws.computes.get(name.lower())
    if found is None:
        raise ArmError(
            404,
            "NotFound",
            f"Compute with name {name} was not found in workspace {ws.coordinates.workspace_name}.",
        )
    return found


def get_compute(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        return FakeResponse(200, copy.deepcopy(_compute(ws, m["name"])))


# Azure refuses an idle time that is not an ISO 8601 duration (`PT2M`, `PT1H30M`).
_ISO_DURATION = re.compile(r"^P(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$")


def _check_scale_settings(scale: dict[str, Any]) -> None:
    if scale.get("minNodeCount", 0) > scale["maxNodeCount"]:
        raise ArmError(400, "BadRequest", "minNodeCount cannot exceed maxNodeCount.")
    idle = scale.get("nodeIdleTimeBeforeScaleDown")
    if idle is not None and (not isinstance(idle, str) or not _ISO_DURATION.match(idle)):
        raise ArmError(
            400, "BadRequest", f"nodeIdleTimeBeforeScaleDown {idle!r} is not an ISO 8601 duration."
        )


def patch_compute(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """ClusterUpdateParameters: only `properties.properties.scaleSettings` may change."""
    ws = _ws(fake, m)
    body = request.body if isinstance(request.body, dict) else {}
    scale = ((body.get("properties") or {}).get("properties") or {}).get("scaleSettings")
    if not isinstance(scale, dict) or "maxNodeCount" not in scale:
        raise ArmError(
            400, "BadRequest", "properties.properties.scaleSettings.maxNodeCount is required."
        )
    with fake.lock:
        compute = _compute(ws, m["name"])
        if compute["properties"]["computeType"] != "AmlCompute":
            raise ArmError(400, "BadRequest", "Only AmlCompute can be scaled.")
        settings = compute["properties"]["properties"]["scaleSettings"]
        _check_scale_settings(scale)

    def finish() -> None:
        with fake.lock:
            settings.update(scale)

    accepted = FakeResponse(
        200,
        {
            **copy.deepcopy(compute),
            "properties": {**compute["properties"], "provisioningState": "Updating"},
        },
    )
    return fake.start_lro(style="async", location=ws.location, finish=finish, accepted=accepted)


def put_compute(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """azure-ai-ml's `compute.begin_update` PUTs the whole cluster; on an existing one Azure
    lets only the scale settings change."""
    ws = _ws(fake, m)
    props = (request.body or {}).get("properties") if isinstance(request.body, dict) else None
    if not isinstance(props, dict) or props.get("computeType") != "AmlCompute":
        raise ArmError(400, "BadRequest", "properties.computeType must be AmlCompute.")
    inner = props.get("properties") or {}
    scale = inner.get("scaleSettings")
    if not isinstance(scale, dict) or "maxNodeCount" not in scale:
        raise ArmError(400, "BadRequest", "properties.properties.scaleSettings is required.")
    with fake.lock:
        compute = _compute(ws, m["name"])
        current = compute["properties"]["properties"]
        if inner.get("vmSize") and inner["vmSize"].lower() != current["vmSize"].lower():
            raise ArmError(400, "BadRequest", "The VM size of an existing cluster cannot change.")
        _check_scale_settings(scale)
        current["scaleSettings"].update(scale)
        body = copy.deepcopy(compute)
    accepted = FakeResponse(200, body)
    return fake.start_lro(style="async", location=ws.location, finish=None, accepted=accepted)


def stop_compute(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        compute = _compute(ws, m["name"])
        inner = compute["properties"]["properties"]
        if compute["properties"]["computeType"] != "ComputeInstance":
            raise ArmError(400, "BadRequest", "Only a compute instance can be stopped.")
        if inner["state"] != "Running":
            raise ArmError(
                409, "Conflict", f"Compute instance {m['name']} is {inner['state']}, not Running."
            )
        inner["state"] = "Stopping"

    def finish() -> None:
        with fake.lock:
            inner["state"] = "Stopped"
            inner["lastOperation"] = {
                "operationName": "Stop",
                "operationTime": _now(),
                "operationStatus": "Succeeded",
                "operationTrigger": "User",
            }

    return fake.start_lro(style="async", location=ws.location, finish=finish)


# -- datastores --------------------------------------------------------------------------


def list_datastores(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        items = [copy.deepcopy(ws.datastores[key]) for key in sorted(ws.datastores)]
    if request.query.get("isDefault", "").lower() == "true":
        items = [item for item in items if item["properties"]["isDefault"]]
    return fake.page(request, items)


def get_datastore(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        found = ws.datastores.get(m["name"].lower())
        if found is None:
            raise ArmError(
                404, "UserError", f"DatastoreNotFound: {m['name']} datastore does not exist."
            )
        return FakeResponse(200, copy.deepcopy(found))


def put_datastore(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    props = (request.body or {}).get("properties") if isinstance(request.body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(400, "UserError", "The request body needs `properties`.")
    kind = props.get("datastoreType")
    if kind not in DATASTORE_FIELDS:
        raise ArmError(400, "UserError", f"Unsupported datastoreType {kind!r}.")
    for required in ("accountName", DATASTORE_FIELDS[kind], "credentials"):
        if not props.get(required):
            raise ArmError(400, "UserError", f"properties.{required} is required for {kind}.")
    credentials = dict(props["credentials"])
    # Azure keeps secrets in the workspace Key Vault and never returns them.
    credentials.pop("secrets", None)
    body = {
        "id": f"{ws.id}/datastores/{m['name']}",
        "name": m["name"],
        "type": f"{ML}/workspaces/datastores",
        "properties": {
            "description": None,
            "tags": {},
            "properties": None,
            "isDefault": False,
            "subscriptionId": None,
            "resourceGroup": None,
            "endpoint": "core.windows.net",
            "protocol": "https",
            "serviceDataAccessAuthIdentity": "None",
            **props,
            "credentials": credentials,
        },
        "systemData": {"createdAt": _now(), "createdBy": "amlbot", "createdByType": "Application"},
    }
    with fake.lock:
        existed = m["name"].lower() in ws.datastores
        ws.datastores[m["name"].lower()] = body
    return FakeResponse(200 if existed else 201, copy.deepcopy(body))


# -- jobs --------------------------------------------------------------------------------


def _job(ws: WorkspaceState, name: str) -> dict[str, Any]:
    found = ws.jobs.get(name.lower())
    if found is None:
        raise ArmError(
            404,
            "UserError",
            f"The specified resource was not found: job {name} in workspace "
            f"{ws.coordinates.workspace_name}.",
        )
    return found


def job_body(
    fake: FakeAzure, ws: WorkspaceState, name: str, props: dict[str, Any]
) -> dict[str, Any]:
    """A job entity as Azure returns it just after its PUT (status NotStarted)."""
    studio = f"{fake.base_url}/studio/runs/{name}?wsid={ws.id}"
    body = {
        "id": f"{ws.id}/jobs/{name}",
        "name": name,
        "type": f"{ML}/workspaces/jobs",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "parentJobName": None,
            "displayName": name,
            "experimentName": "Default",
            "isArchived": False,
            "identity": {"identityType": "AMLToken"},
            "resources": {"instanceCount": 1, "shmSize": "2g"},
            "environmentVariables": {},
            "inputs": {},
            "outputs": {},
            **copy.deepcopy(props),
            "status": "NotStarted",
            "services": {
                "Tracking": {
                    "jobServiceType": "Tracking",
                    "endpoint": f"azureml://{ws.location}.api.azureml.ms/mlflow/v1.0{ws.id}?",
                },
                "Studio": {"jobServiceType": "Studio", "endpoint": studio},
            },
        },
        "systemData": {"createdAt": _now(), "createdBy": "amlbot", "createdByType": "Application"},
    }
    return body


def put_job(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    props = (request.body or {}).get("properties") if isinstance(request.body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(400, "UserError", "The request body needs `properties`.")
    if props.get("jobType") not in JOB_TYPES:
        raise ArmError(400, "UserError", f"Unsupported jobType {props.get('jobType')!r}.")
    for required in ("command", "environmentId"):
        if not props.get(required):
            raise ArmError(400, "UserError", f"properties.{required} is required.")
    environment = props["environmentId"]
    if environment.startswith("azureml:azureml:") or (
        "@latest" in environment and environment.count(":") > 1
    ):
        raise ArmError(404, "UserError", f"Environment {environment} was not found.")
    code_id = props.get("codeId")
    if code_id:
        with fake.lock:
            if code_id.lower() not in ws.assets:
                raise ArmError(404, "UserError", f"Code asset {code_id} was not found.")
    compute_id = props.get("computeId")
    if compute_id:
        compute_name = compute_id.rstrip("/").split("/")[-1]
        with fake.lock:
            _compute(ws, compute_name)
    with fake.lock:
        existing = ws.jobs.get(m["name"].lower())
        if existing is not None:
            # Azure accepts a re-PUT of a job only when nothing but tags/description changes.
            return FakeResponse(200, copy.deepcopy(existing))
    body = job_body(fake, ws, m["name"], props)
    with fake.lock:
        ws.jobs[m["name"].lower()] = body
    return FakeResponse(201, copy.deepcopy(body))


def get_job(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        return FakeResponse(200, copy.deepcopy(_job(ws, m["name"])))


def list_jobs(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    tag = request.query.get("tag")
    with fake.lock:
        jobs = [copy.deepcopy(job) for job in ws.jobs.values()]
    if tag:
        # Azure's `tag` filter matches jobs carrying the tag key (or `key=value`).
        key, _, value = tag.partition("=")
        jobs = [
            job
            for job in jobs
            if key in (job["properties"].get("tags") or {})
            and (not value or job["properties"]["tags"][key] == value)
        ]
    jobs.sort(key=lambda job: job["systemData"]["createdAt"], reverse=True)
    return fake.page(request, jobs)


def cancel_job(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    with fake.lock:
        job = _job(ws, m["name"])
        if job["properties"]["status"] in {"Completed", "Failed", "Canceled"}:
            raise ArmError(
                400, "UserError", f"Job {m['name']} is {job['properties']['status']} already."
            )
        job["properties"]["status"] = "CancelRequested"

    def finish() -> None:
        with fake.lock:
            job["properties"]["status"] = "Canceled"

    return fake.start_lro(style="location", location=ws.location, finish=finish)


def add_job_submitted_by(
    fake: FakeAzure,
    coords: AzureCoordinates,
    name: str,
    compute: str,
    created_by: str,
    status: str = "Running",
) -> None:
    """A command job a person submitted themselves (SDK, CLI, studio), not through the bot:
    Azure records them in `systemData.createdBy` (their principal name) as a `User`."""
    ws = fake.workspace(coords)
    body = job_body(
        fake,
        ws,
        name,
        {
            "jobType": "Command",
            "command": "python sweep.py",
            "environmentId": "azureml:AzureML-sklearn-1.5@latest",
            "computeId": f"{ws.id}/computes/{compute}",
        },
    )
    body["properties"]["status"] = status
    body["systemData"] = {"createdAt": _now(), "createdBy": created_by, "createdByType": "User"}
    with fake.lock:
        ws.jobs[name.lower()] = body
