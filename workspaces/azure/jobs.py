"""Command jobs: submit (idempotent on the request's job name), get, list by tag, cancel.

What users type is normalised before it reaches azure-ai-ml: environments become
`NAME@latest`, `azureml:NAME:VERSION` or an image; inputs get their type from their URI;
code is a registered code asset or a URL, never local files (those would make the SDK
fetch datastore secrets and upload from the bot's disk).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from shared.errors import NotFoundError, WorkspaceError
from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.errors import translated
from workspaces.types import JobInfo, JobSpec, JobStatus

BOT_TAG = "amlbot"
_ASSET = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9][\w.-]*):(?P<version>[\w.-]+)$")
_LATEST = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9][\w.-]*)@latest$")
_BARE_NAME = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9][\w.-]*)$")
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def normalise_environment(raw: str) -> str:
    """`NAME@latest`, `azureml:NAME:VERSION`, an image reference, or an ARM/registry id.

    azure-ai-ml keeps an `azureml:` prefix in front of `@latest` in the URL it asks for,
    and Azure answers 404; a bare name means its latest version.
    """
    value = raw.strip()
    if value.startswith(("/subscriptions/", "azureml://")):
        return value
    if "/" in value:  # registry/repository[:tag]: a Docker image
        return value
    if found := _LATEST.match(value):
        return f"{found['name']}@latest"
    if found := _ASSET.match(value):
        return f"azureml:{found['name']}:{found['version']}"
    if found := _BARE_NAME.match(value):
        return f"{found['name']}@latest"
    raise WorkspaceError(
        f"`{raw}` is not an environment: use NAME@latest (e.g. AzureML-sklearn-1.5@latest), "
        "azureml:NAME:VERSION, or a Docker image such as mcr.microsoft.com/azureml/minimal:latest."
    )


def _environment(value: str) -> Any:
    if "/" in value and not value.startswith(("/subscriptions/", "azureml://")):
        from azure.ai.ml.entities import Environment

        return Environment(image=value)
    return value


def normalise_code(clients: WorkspaceClients, raw: str | None) -> str | None:
    """A registered code asset's id, or an https URL; never a local path or a git URL."""
    if not raw:
        return None
    value = raw.strip()
    if value.startswith("/subscriptions/") and "/codes/" in value:
        return value
    if found := _ASSET.match(value):
        return (
            f"{clients.coordinates.workspace_scope}/codes/{found['name']}"
            f"/versions/{found['version']}"
        )
    if value.startswith("git+") or value.endswith(".git"):
        raise WorkspaceError(
            f"Code from git ({raw}) is not supported by azure-ai-ml for command jobs yet; "
            "register the code as a code asset and give azureml:NAME:VERSION."
        )
    if urlsplit(value).scheme == "https":
        return value
    raise WorkspaceError(
        f"Code must be a registered code asset (azureml:NAME:VERSION) or an https URL, not "
        f"`{raw}`: the bot never uploads files from its own machine."
    )


def input_type(clients: WorkspaceClients, uri: str) -> tuple[str, str]:
    """(job input type, URI) for `azureml://`, `https://`, `abfss://` or `azureml:NAME:VERSION`.

    A data asset has its own type (one look-up); a path ending in `/` is a folder, one whose
    last part has an extension is a file, one ending in `/MLTable` is the folder of an
    MLTable.
    """
    value = uri.strip()
    if value.startswith("azureml:") and not value.startswith("azureml://"):
        found = _ASSET.match(value)
        if found is None:
            raise WorkspaceError(f"`{uri}` is not a data asset reference (azureml:NAME:VERSION).")
        with translated(f"looking up data asset {found['name']}:{found['version']}"):
            asset = clients.ml().data.get(found["name"], version=found["version"])
        return str(asset.type), f"azureml:{found['name']}:{found['version']}"
    scheme = urlsplit(value).scheme
    if scheme not in {"azureml", "https", "abfss", "wasbs"}:
        raise WorkspaceError(
            f"Input `{uri}` must be an azureml://, https://, abfss:// URI or azureml:NAME:VERSION."
        )
    if value.rstrip("/").endswith("/MLTable"):
        return "mltable", value.rstrip("/").removesuffix("MLTable")
    if value.endswith("/"):
        return "uri_folder", value
    last = value.rsplit("/", 1)[-1]
    return ("uri_file" if _FILE_SUFFIX.search(last) else "uri_folder"), value


def submit_job(clients: WorkspaceClients, spec: JobSpec) -> JobInfo:
    workspace = clients.coordinates.workspace_name
    environment = _environment(normalise_environment(spec.environment))
    code = normalise_code(clients, spec.code)
    from azure.ai.ml import Input, command

    inputs: dict[str, Any] = {}
    for name, uri in spec.inputs.items():
        kind, path = input_type(clients, uri)
        inputs[name] = Input(type=kind, path=path)
    existing = _find(clients, spec.name)
    if existing is not None:
        return existing  # a retried request: the job is already there
    job = command(
        name=spec.name,
        display_name=spec.display_name or spec.name,
        experiment_name=spec.experiment,
        command=spec.command,
        environment=environment,
        compute=spec.compute,
        code=code,
        inputs=inputs,
        instance_count=spec.instance_count,
        tags={BOT_TAG: "true", **spec.tags},
    )
    if spec.timeout_seconds is not None:
        # Azure stops the job at this limit (`limits.timeout` of the command job).
        job.set_limits(timeout=spec.timeout_seconds)
    with translated(f"submitting job {spec.name} to {spec.compute} in workspace {workspace}"):
        created = clients.ml().jobs.create_or_update(job)
    return job_info(clients, created)


def _find(clients: WorkspaceClients, name: str) -> JobInfo | None:
    from azure.core.exceptions import ResourceNotFoundError

    with translated(f"looking up job {name}"):
        try:
            return job_info(clients, clients.ml().jobs.get(name))
        except ResourceNotFoundError:
            return None


def get_job(clients: WorkspaceClients, name: str) -> JobInfo:
    found = _find(clients, name)
    if found is None:
        raise NotFoundError(
            f"There is no job `{name}` in workspace `{clients.coordinates.workspace_name}`."
        )
    return found


def list_jobs(clients: WorkspaceClients, tag_filter: dict[str, str] | None) -> list[JobInfo]:
    """Every job carrying the tags, through all of Azure's pages (the SDK follows
    `nextLink`): a cut-off would silently stop following the jobs beyond it. Callers narrow
    the list with a tag; the bot's own jobs all carry `amlbot`."""
    wanted = dict(tag_filter or {})
    kwargs: dict[str, Any] = {}
    if wanted:
        # Azure filters on one tag key server-side; the values are checked here.
        kwargs["tag"] = next(iter(wanted))
    with translated(f"listing jobs in workspace {clients.coordinates.workspace_name}"):
        jobs = list(clients.ml().jobs.list(**kwargs))
    infos = [job_info(clients, job) for job in jobs]
    infos = [i for i in infos if all(i.tags.get(k) == v for k, v in wanted.items())]
    return sorted(infos, key=lambda i: (i.created_at is not None, i.created_at), reverse=True)


def cancel_job(clients: WorkspaceClients, name: str) -> JobInfo:
    current = get_job(clients, name)
    if current.status.is_terminal or current.status is JobStatus.CANCEL_REQUESTED:
        return current  # nothing to cancel; Azure would refuse with 400
    with translated(f"cancelling job {name}"):
        clients.ml().jobs.begin_cancel(name).result()
    return get_job(clients, name)


def job_info(clients: WorkspaceClients, job: Any) -> JobInfo:
    context = getattr(job, "creation_context", None)
    compute = getattr(job, "compute", None)
    return JobInfo(
        name=job.name,
        status=JobStatus.parse(getattr(job, "status", None)),
        compute=compute.rstrip("/").rsplit("/", 1)[-1] if compute else None,
        experiment=getattr(job, "experiment_name", None),
        display_name=getattr(job, "display_name", None),
        created_at=getattr(context, "created_at", None),
        studio_url=getattr(job, "studio_url", None) or studio_url(clients, job.name),
        tags={str(k): str(v) for k, v in (getattr(job, "tags", None) or {}).items()},
        created_by=getattr(context, "created_by", None),
    )


def studio_url(clients: WorkspaceClients, job_name: str) -> str:
    """Azure ML studio's page for a job, for when Azure did not return one."""
    coords = clients.coordinates
    wsid = (
        f"/subscriptions/{coords.subscription_id}/resourcegroups/{coords.resource_group}"
        f"/workspaces/{coords.workspace_name}"
    )
    return f"{clients.endpoints.studio}/runs/{job_name}?wsid={wsid}"
