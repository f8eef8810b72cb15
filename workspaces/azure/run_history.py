"""An ended job's outcome: when it ran, Azure's error, and the last lines of its error log.

Where this comes from, and why it is read the way it is:

- The job entity of `ml_client.jobs.get/list` (ARM, `.../workspaces/W/jobs/NAME`) carries no
  start or end time and no error. azure-ai-ml reads those from the workspace's RunHistory
  service: `JobOperations._runs_operations` builds a `RunHistoryClient` on the `api` endpoint
  of the workspace's discovery URL, and `jobs.stream` reads `runs/{name}/details`, whose
  `logFiles` map each log's name to a SAS URL of its blob.
- azure-ai-ml has no public call that returns any of it: `jobs.stream` prints to standard
  output and polls until the job ends; `jobs.download` writes every log and output to disk
  and fetches datastore secrets to do so.
- Its RunHistory client and models are private (`azure.ai.ml._restclient.runhistory`) and
  are regenerated between releases: 1.35 replaced the msrest models and patches the client
  to keep its old constructor. The REST contract underneath (`GET /history/v1.0/...`) is
  what both SDK generations call, so this module calls it itself, through the same
  azure-core pipeline, credential, cloud endpoints and TLS trust as the rest of the backend
  (as `computes` does for what the SDK entity drops). A test checks the URL and the field
  names against the installed SDK's request builder and model, so an upgrade that moves
  either fails there rather than here.

Metrics are not in RunHistory's details: a job logs them through MLflow, and the workspace
is its MLflow tracking server (`mlflowTrackingUri`, `azureml://API-HOST/mlflow/v1.0/...`,
on the same `api` host). MLflow's `runs/get` (the run id is the job's name) answers each
metric's latest value; no MLflow client is needed for one GET.

Cost: the RunHistory endpoint is found once per process (the workspace GET and its
discovery document); then one details call per ended job, one MLflow call for a completed
one, and for a failed one two more to its log's blob (its size, then its last bytes).
The SAS URL of a log is a secret: it lives in a local variable for those two calls and
goes into no log, exception, message or row.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from azure.core.rest import HttpRequest

from shared.errors import TransientError, WorkspaceError
from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.errors import translated
from workspaces.types import AzureCoordinates, JobOutcome, JobStatus

log = logging.getLogger(__name__)

RUN_HISTORY_API_VERSION = "v1.0"
# The end of a log is read, not all of it: tens of lines, even long ones, fit.
TAIL_BYTES = 16 * 1024

# Azure's error names the log to read ("Please check log file 'user_logs/std_log.txt'").
_NAMED_LOG = re.compile(r"log file '([^']+)'")
# Where a command job's own output goes, as azure-ai-ml's `JobLogPattern` knows it: the
# common runtime's log of the first process, then the legacy driver log.
_ERROR_LOGS = (
    re.compile(r"^user_logs/std_log\D*0*(?:_ps)?\.txt$"),
    re.compile(r"^azureml-logs/70_driver_log(?:_0)?\.txt$"),
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def details_path(coordinates: AzureCoordinates, name: str) -> str:
    return f"/history/v1.0{coordinates.workspace_scope}/runs/{quote(name, safe='')}/details"


def job_outcome(clients: WorkspaceClients, name: str) -> JobOutcome:
    with translated(f"reading the run history of job {name}"):
        details = clients.run_history().request(
            "GET",
            details_path(clients.coordinates, name),
            params={"api-version": RUN_HISTORY_API_VERSION},
        )
    details = details if isinstance(details, dict) else {}
    status = JobStatus.parse(details.get("status"))
    error = error_message(details.get("error"))
    log_name: str | None = None
    tail: list[str] = []
    metrics: dict[str, float] = {}
    if status is JobStatus.COMPLETED:
        try:
            metrics = latest_metrics(clients, name)
        except WorkspaceError as exc:
            # Its times still make the announcement worth more.
            log.warning("could not read the metrics of job %s: %s", name, exc)
    if status is JobStatus.FAILED:
        log_files = details.get("logFiles") or {}
        log_name = error_log_name(log_files, error)
        if log_name is not None:
            try:
                tail = read_log_tail(clients, str(log_files[log_name]))
            except WorkspaceError as exc:
                # Its times and error still make the announcement worth more.
                log.warning("could not read %s of job %s: %s", log_name, name, exc)
    return JobOutcome(
        started_at=utc_time(details.get("startTimeUtc")),
        ended_at=utc_time(details.get("endTimeUtc")),
        error=error,
        error_log_name=log_name if tail else None,
        error_log_tail=tail,
        metrics=metrics,
    )


def mlflow_run_path(coordinates: AzureCoordinates) -> str:
    return f"/mlflow/v1.0{coordinates.workspace_scope}/api/2.0/mlflow/runs/get"


def latest_metrics(clients: WorkspaceClients, name: str) -> dict[str, float]:
    """Each metric's latest value, as MLflow's `runs/get` answers (`run.data.metrics`)."""
    with translated(f"reading the metrics of job {name}"):
        answer = clients.run_history().request(
            "GET", mlflow_run_path(clients.coordinates), params={"run_id": name}
        )
    run = answer.get("run") if isinstance(answer, dict) else None
    data = run.get("data") if isinstance(run, dict) else None
    found = data.get("metrics") if isinstance(data, dict) else None
    metrics: dict[str, float] = {}
    for metric in found if isinstance(found, list) else []:
        try:
            value = float(metric["value"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            metrics[str(metric["key"])] = value
    return metrics


def error_message(error: Any) -> str | None:
    """The message of RunHistory's `{"error": {"code", "message", ...}, ...}`."""
    if not isinstance(error, dict):
        return None
    inner = error.get("error")
    root: dict[str, Any] = inner if isinstance(inner, dict) else error
    message = str(root.get("message") or "").strip()
    code = str(root.get("code") or "").strip()
    return message or code or None


def error_log_name(log_files: Mapping[str, Any], error: str | None) -> str | None:
    """The log a failed job's error is in: the one Azure's error names, else its user log."""
    named = _NAMED_LOG.search(error or "")
    if named is not None and named.group(1) in log_files:
        return named.group(1)
    for pattern in _ERROR_LOGS:
        found = sorted(name for name in log_files if pattern.match(name))
        if found:
            return found[0]
    return None


def read_log_tail(clients: WorkspaceClients, sas_url: str) -> list[str]:
    """The last lines of the log blob at `sas_url`: its size, then a ranged read of its end."""
    try:
        pipeline = clients.anonymous()
        head = pipeline.send_request(HttpRequest("HEAD", sas_url))
        _check(head.status_code, 200)
        size = int(head.headers.get("Content-Length") or 0)
        if size == 0:
            return []
        start = max(size - TAIL_BYTES, 0)
        ranged = pipeline.send_request(
            HttpRequest("GET", sas_url, headers={"Range": f"bytes={start}-{size - 1}"})
        )
        _check(ranged.status_code, 200, 206)
        data = ranged.read()
    except WorkspaceError:
        raise
    except Exception as exc:
        # Transport errors quote the URL they failed on, SAS and all: only the kind leaves.
        raise TransientError(f"the log could not be fetched ({type(exc).__name__})") from None
    # A server that ignored the range sent it all; a ranged read starts mid-line.
    return log_lines(data[-TAIL_BYTES:], starts_mid_line=start > 0 or len(data) > TAIL_BYTES)


def _check(status: int, *expected: int) -> None:
    if status not in expected:
        raise TransientError(f"Azure Storage answered HTTP {status} for the log")


def log_lines(data: bytes, *, starts_mid_line: bool) -> list[str]:
    """Lines as a terminal last showed them: colours removed, and of a line redrawn with
    carriage returns (a progress bar) only its last state."""
    lines = data.decode("utf-8", errors="replace").split("\n")
    if starts_mid_line:
        lines = lines[1:]
    shown = [
        _CONTROL.sub("", _ANSI_ESCAPE.sub("", line.rstrip("\r").rsplit("\r", 1)[-1])).rstrip()
        for line in lines
    ]
    while shown and not shown[-1]:
        shown.pop()
    return shown


def utc_time(value: Any) -> datetime | None:
    """RunHistory's times (`2024-02-23T15:09:06.984Z`, or seven decimals and `+00:00`)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
