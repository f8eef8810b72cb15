"""The fake's Azure ML data plane: the workspace's discovery document, RunHistory's run
details, the log blobs those details hand out SAS URLs for, and MLflow's `runs/get`.

Shapes: the run details azure-ai-ml's `RunDetails` model reads (`startTimeUtc`,
`endTimeUtc`, `error`, `logFiles`), as real responses quoted in public issues show them:
times with a `Z`, the error wrapped as `{"error": {"code", "message", ...}, "correlation",
"environment", "location", "time", "componentName"}`, and each log a blob URL whose query
is its SAS (`sv`, `sr`, `sig`, `skoid`, ..., `se`, `sp`). Blob reads honour `Range` (206) and
refuse a bearer token next to a SAS, which Azure Storage would not accept either.
"""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from tests.fakes.azure_arm_state import ML, ArmError, Blob, FakeResponse, RunRecord, WorkspaceState
from workspaces.types import AzureCoordinates

if TYPE_CHECKING:
    from tests.fakes.azure_arm import FakeAzure, Request

WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    rf"/providers/{ML}/workspaces/(?P<ws>[^/]+)"
)
STD_LOG = "user_logs/std_log.txt"
# Logs every common-runtime job has besides the user's own; the bot must not pick these.
SYSTEM_LOGS = (
    "system_logs/cs_capability/cs-capability.log",
    "system_logs/lifecycler/execution-wrapper.log",
    "system_logs/lifecycler/lifecycler.log",
)
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def register(fake: FakeAzure) -> None:
    route = fake.route
    route("GET", "/discovery", discovery, api_versions=None, audience="none")
    route(
        "GET",
        rf"/history/v1\.0{WS}/runs/(?P<name>[^/]+)/details",
        run_details,
        action=f"{ML}/workspaces/experiments/runs/read",
        api_versions={"v1.0"},  # what azure-ai-ml 1.35's RunHistory client sends
    )
    route("GET", "/blobs/(?P<blob>.+)", read_blob, api_versions=None, audience="none")
    route("HEAD", "/blobs/(?P<blob>.+)", read_blob, api_versions=None, audience="none")
    # The workspace's MLflow tracking server (its `mlflowTrackingUri`, on the same host).
    route(
        "GET",
        rf"/mlflow/v1\.0{WS}/api/2\.0/mlflow/runs/get",
        mlflow_run,
        api_versions=None,
        action=f"{ML}/workspaces/experiments/runs/read",
    )


def discovery(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """What `https://REGION.api.azureml.ms/discovery` answers, without a token."""
    base = fake.base_url
    return FakeResponse(
        200,
        {
            "api": base,
            "catalog": "https://catalog.cortanaanalytics.com",
            "experimentation": base,
            "gallery": "https://gallery.cortanaintelligence.com/project",
            "history": base,
            "hyperdrive": base,
            "labeling": base,
            "modelmanagement": base,
            "pipelines": base,
            "studiocoreservices": base,
        },
    )


def run_details(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = fake.find_workspace(m["sub"], m["rg"], m["ws"])
    with fake.lock:
        job = ws.jobs.get(m["name"].lower())
        if job is None:
            raise ArmError(404, "UserError", f"Run {m['name']} was not found.")
        record = ws.runs.get(m["name"].lower(), RunRecord())
        props = job["properties"]
        log_files = {
            name: f"{fake.base_url}/blobs/{path}?{fake.blobs[path].query}"
            for name, path in record.logs.items()
        }
    compute = (props.get("computeId") or "").rstrip("/").rsplit("/", 1)[-1] or None
    return FakeResponse(
        200,
        {
            "runId": m["name"],
            "runUuid": "0b9d2f1e-0000-4000-8000-000000000001",
            "parentRunUuid": None,
            "target": compute,
            "status": props["status"],
            "parentRunId": None,
            "dataContainerId": f"dcid.{m['name']}",
            "createdTimeUtc": job["systemData"]["createdAt"],
            "startTimeUtc": _run_time(record.started_at),
            "endTimeUtc": _run_time(record.ended_at),
            "error": record.error,
            "warnings": None,
            "tags": props.get("tags") or {},
            "properties": {"azureml.runsource": "azureml.scriptrun", "ClientType": "Mfe"},
            "parameters": {},
            "services": {},
            "inputDatasets": None,
            "outputDatasets": [],
            "runDefinition": None,
            "logFiles": log_files,
            "revision": 7,
            "runTypeV2": {"orchestrator": None, "traits": ["scriptRun"], "attribution": None},
            "settings": {},
            "computeDuration": None,
            "duration": None,
        },
    )


def mlflow_run(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """MLflow's `GET runs/get?run_id=`: in Azure ML the run id is the job's name, and
    `data.metrics` holds each metric's latest value."""
    ws = fake.find_workspace(m["sub"], m["rg"], m["ws"])
    run_id = request.query.get("run_id", "")
    with fake.lock:
        job = ws.jobs.get(run_id.lower())
        if job is None:
            return FakeResponse(
                404,
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id} not found"},
            )
        record = ws.runs.get(run_id.lower(), RunRecord())
        status = job["properties"]["status"]
    stamp = int(datetime.now(UTC).timestamp() * 1000)
    return FakeResponse(
        200,
        {
            "run": {
                "info": {"run_id": run_id, "run_uuid": run_id, "status": status.upper()},
                "data": {
                    "metrics": [
                        {"key": key, "value": value, "timestamp": stamp, "step": 0}
                        for key, value in record.metrics.items()
                    ],
                    "params": [],
                    "tags": [],
                },
            }
        },
    )


def read_blob(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    if "authorization" in request.headers:
        raise ArmError(
            400, "InvalidAuthenticationInfo", "A SAS and an Authorization header were both sent."
        )
    with fake.lock:
        blob = fake.blobs.get(m["blob"])
    if blob is None:
        raise ArmError(404, "BlobNotFound", "The specified blob does not exist.")
    if request.query.get("sig") != blob.signature:
        raise ArmError(403, "AuthenticationFailed", "Signature did not match.")
    size = len(blob.data)
    wanted = _RANGE.match(request.headers.get("range") or request.headers.get("x-ms-range") or "")
    if wanted is None:
        return FakeResponse(200, blob.data, {"Accept-Ranges": "bytes"})
    start = int(wanted.group(1))
    end = min(int(wanted.group(2) or size - 1), size - 1)
    if start >= size:
        raise ArmError(416, "InvalidRange", "The range specified is invalid for the blob size.")
    return FakeResponse(
        206, blob.data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{size}"}
    )


def end_job(
    fake: FakeAzure,
    coords: AzureCoordinates,
    name: str,
    status: str,
    *,
    ran_for: timedelta | None,
    queued_for: timedelta,
    error: str | None,
    log: str | None,
    log_name: str,
    metrics: dict[str, float] | None = None,
) -> None:
    with fake.lock:
        ws = fake.workspace(coords)
        job = ws.jobs[name.lower()]
        job["properties"]["status"] = status
        created = datetime.fromisoformat(job["systemData"]["createdAt"])
        started = created + queued_for if ran_for is not None else None
        record = RunRecord(
            started_at=started,
            ended_at=(started or created + queued_for) + (ran_for or timedelta()),
            error=_run_error(ws, error) if error else None,
            metrics=dict(metrics or {}),
        )
        logs = {log_name: log or ""} if log is not None else {}
        logs.update({system: "ok\n" for system in SYSTEM_LOGS})
        for log_file, text in logs.items():
            path = f"azureml/ExperimentRun/dcid.{name}/{log_file}"
            record.logs[log_file] = path
            fake.blobs[path] = _sas_blob(text.encode())
        ws.runs[name.lower()] = record


def _sas_blob(data: bytes) -> Blob:
    signature = base64.b64encode(os.urandom(32)).decode()
    query = urlencode(
        {
            "sv": "2019-07-07",
            "sr": "b",
            "sig": signature,
            "skoid": "3b36aaa3-38b6-425b-9ec8-dd8762ceabd9",
            "sktid": "722595d7-167c-4a9a-b847-dcf4de414b79",
            "skt": "2026-01-05T08:54:29Z",
            "ske": "2026-01-07T00:04:29Z",
            "sks": "b",
            "skv": "2019-07-07",
            "st": "2026-01-05T08:56:45Z",
            "se": "2026-01-06T02:06:45Z",
            "sp": "r",
        }
    )
    return Blob(data=data, signature=signature, query=query)


def _run_error(ws: WorkspaceState, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "UserError",
            "severity": None,
            "message": message,
            "messageFormat": None,
            "messageParameters": {},
            "referenceCode": None,
            "detailsUri": None,
            "target": None,
            "details": [],
            "innerError": None,
            "debugInfo": None,
            "additionalInfo": None,
        },
        "correlation": {"operation": None, "request": "5c1d2a9e3f7b4e10"},
        "environment": ws.location,
        "location": ws.location,
        "time": _run_time(datetime.now(UTC)),
        "componentName": "CommonRuntime",
    }


def _run_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
