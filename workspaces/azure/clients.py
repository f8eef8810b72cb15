"""The Azure clients one workspace needs, built once, lazily, and shared between threads.

- `ml`: azure-ai-ml's `MLClient` for the workspace (importing azure.ai.ml takes seconds,
  so it happens on first use, never at import).
- `authorization(subscription)`: azure-mgmt-authorization's client, one per subscription
  and cloud, shared by every workspace through `_AUTH_REGISTRY`.
- `arm` and `graph`: azure-core pipelines for the few raw REST calls the SDKs cannot make
  (compute node counts the SDK entity drops; Graph user look-ups).
- `run_history`: the workspace's RunHistory service (an ended job's times, error and log
  files), at the endpoint the workspace's discovery URL names, as azure-ai-ml finds it.
- `anonymous`: a pipeline that sends no token, for the discovery URL and for the SAS URLs
  of log blobs, which carry their own authorization.

All of them use the same credential, cloud endpoints, TLS trust and retry policy; the last
two retry less, because an announcement waits for them. Every one of them has the
connection's `AzureCallPolicy` after its retry policy (`workspaces/azure/telemetry.py`):
each attempt is logged with Azure's `x-ms-request-id` and counted. The `Connection` and
the pipelines and transports it builds are in `workspaces/azure/connection.py`.
"""

from __future__ import annotations

import threading
from typing import Any

from azure.core import PipelineClient
from azure.core.rest import HttpRequest

from shared.errors import WorkspaceError
from workspaces.azure.cloud import CloudEndpoints
from workspaces.azure.connection import DETAILS_TIMEOUTS, USER_AGENT, Connection
from workspaces.types import AzureCoordinates

WORKSPACE_API_VERSION = "2024-04-01"


class RestClient:
    """JSON over an azure-core pipeline: send, raise `HttpResponseError` on failure, page."""

    def __init__(self, pipeline: PipelineClient[Any, Any], base_url: str) -> None:
        self._pipeline = pipeline
        self._base_url = base_url

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
            map_error,
        )

        url = path_or_url if "://" in path_or_url else self._base_url + path_or_url
        response = self._pipeline.send_request(HttpRequest(method, url, params=params, json=json))
        if response.status_code >= 400:
            # The same exception types the generated SDK clients raise.
            error_map = {
                401: ClientAuthenticationError,
                404: ResourceNotFoundError,
                409: ResourceExistsError,
            }
            map_error(response.status_code, response, error_map)
            raise HttpResponseError(response=response)
        return response.json() if response.content else None

    def list_all(self, path: str, *, params: dict[str, str]) -> list[Any]:
        """Every item of an ARM list, following `nextLink` (one request per page)."""
        page = self.request("GET", path, params=params)
        items = list(page.get("value", []))
        while page.get("nextLink"):
            page = self.request("GET", page["nextLink"])
            items.extend(page.get("value", []))
        return items


class _AuthorizationRegistry:
    """One `AuthorizationManagementClient` per (cloud, credential, subscription, call
    policy)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, connection: Connection, subscription_id: str) -> Any:
        key = (
            connection.endpoints.resource_manager,
            id(connection.credential),
            str(connection.connection_verify),
            subscription_id,
            id(connection.call_policy),
        )
        with self._lock:
            entry = self._clients.get(key)
            # The credential and policy are kept in the entry so their ids cannot be reused.
            if (
                entry is None
                or entry[0] is not connection.credential
                or entry[1] is not connection.call_policy
            ):
                from azure.mgmt.authorization import AuthorizationManagementClient

                client = AuthorizationManagementClient(
                    connection.credential,
                    subscription_id,
                    base_url=connection.endpoints.resource_manager,
                    credential_scopes=[connection.endpoints.arm_scope],
                    retry_policy=connection.retry_policy,
                    **connection.sdk_kwargs(),
                )
                entry = (connection.credential, connection.call_policy, client)
                self._clients[key] = entry
            return entry[2]


_AUTH_REGISTRY = _AuthorizationRegistry()


class WorkspaceClients:
    """The clients of one workspace; each made on first use, under a lock."""

    def __init__(self, coordinates: AzureCoordinates, connection: Connection) -> None:
        self.coordinates = coordinates
        self.connection = connection
        self._ml: Any = None
        self._arm: RestClient | None = None
        self._graph: RestClient | None = None
        self._run_history: RestClient | None = None
        self._anonymous: PipelineClient[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> CloudEndpoints:
        return self.connection.endpoints

    def ml(self) -> Any:
        if self._ml is None:
            with self._lock:
                if self._ml is None:
                    self._ml = _make_ml_client(self.coordinates, self.connection)
        return self._ml

    def authorization(self, subscription_id: str | None = None) -> Any:
        return _AUTH_REGISTRY.get(
            self.connection, subscription_id or self.coordinates.subscription_id
        )

    def arm(self) -> RestClient:
        if self._arm is None:
            with self._lock:
                if self._arm is None:
                    base = self.endpoints.resource_manager
                    pipeline = self.connection.pipeline(base, self.endpoints.arm_scope)
                    self._arm = RestClient(pipeline, base)
        return self._arm

    def graph(self) -> RestClient:
        if self._graph is None:
            with self._lock:
                if self._graph is None:
                    base = self.endpoints.graph
                    pipeline = self.connection.pipeline(
                        base, self.endpoints.graph_scope, service="graph"
                    )
                    self._graph = RestClient(pipeline, base)
        return self._graph

    def anonymous(self) -> PipelineClient[Any, Any]:
        if self._anonymous is None:
            with self._lock:
                if self._anonymous is None:
                    self._anonymous = self.connection.anonymous_pipeline(
                        retry_policy=self.connection.details_retry_policy(),
                        timeouts=DETAILS_TIMEOUTS,
                    )
        return self._anonymous

    def run_history(self) -> RestClient:
        """The RunHistory service of this workspace. azure-ai-ml calls it with a resource
        manager token too (its data-plane clients get the cloud's ARM scope)."""
        if self._run_history is None:
            # Found outside the lock: finding it takes `arm()`, which takes the lock.
            base = _run_history_endpoint(self)
            with self._lock:
                if self._run_history is None:
                    pipeline = self.connection.pipeline(
                        base,
                        self.endpoints.arm_scope,
                        retry_policy=self.connection.details_retry_policy(),
                        timeouts=DETAILS_TIMEOUTS,
                        service="run_history",
                    )
                    self._run_history = RestClient(pipeline, base)
        return self._run_history


def _run_history_endpoint(clients: WorkspaceClients) -> str:
    """The `api` endpoint the workspace's discovery URL names: regional
    (`https://eastus.api.azureml.ms`), sovereign or private-link alike, as azure-ai-ml's
    `JobOperations._get_workspace_url` finds it. The discovery document needs no token."""
    name = clients.coordinates.workspace_name
    workspace = clients.arm().request(
        "GET",
        clients.coordinates.workspace_scope,
        params={"api-version": WORKSPACE_API_VERSION},
    )
    discovery_url = ((workspace or {}).get("properties") or {}).get("discoveryUrl")
    if not discovery_url:
        raise WorkspaceError(f"Azure names no discovery URL for workspace {name}.")
    urls = RestClient(clients.anonymous(), "").request("GET", str(discovery_url))
    api = urls.get("api") if isinstance(urls, dict) else None
    if not api:
        raise WorkspaceError(f"The discovery URL of workspace {name} names no `api` endpoint.")
    return str(api).rstrip("/")


_ml_import_lock = threading.Lock()
_git_stamping_disabled = False


def _make_ml_client(coordinates: AzureCoordinates, connection: Connection) -> Any:
    with _ml_import_lock:
        from azure.ai.ml import MLClient

        _disable_git_stamping()
        # MLClient records the cloud in os.environ (AZUREML_CURRENT_CLOUD) and in a global
        # table; creating clients one at a time keeps that consistent.
        return MLClient(
            connection.credential,
            subscription_id=coordinates.subscription_id,
            resource_group_name=coordinates.resource_group,
            workspace_name=coordinates.workspace_name,
            show_progress=False,
            enable_telemetry=False,
            retry_policy=connection.retry_policy,
            polling_interval=connection.retry_policy.settings.polling_interval_seconds,
            user_agent=USER_AGENT,
            **connection.endpoints.sdk_cloud_kwargs(),
            **connection.sdk_kwargs(),
        )


def _disable_git_stamping() -> None:
    """Stop azure-ai-ml stamping the bot's own git checkout on users' jobs.

    `jobs.create_or_update` runs `git` in the process's working directory and adds that
    repository's URL, branch and commit to the job's properties. For the bot that is its own
    source tree, which says nothing about the user's code (and leaks our remote URL). The
    AZUREML_GIT_* variables only override values, they do not turn the probe off, so the
    probe is replaced, once, for the whole process.
    """
    global _git_stamping_disabled
    if _git_stamping_disabled:
        return
    from azure.ai.ml.operations import _job_operations

    if not hasattr(_job_operations, "get_git_properties"):
        raise RuntimeError(
            "azure-ai-ml no longer has _job_operations.get_git_properties; re-check how it "
            "stamps git properties on jobs before upgrading (see workspaces/azure/clients.py)"
        )
    _job_operations.get_git_properties = _no_git_properties
    _git_stamping_disabled = True


def _no_git_properties() -> dict[str, str]:
    return {}
