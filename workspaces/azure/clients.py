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
each attempt is logged with Azure's `x-ms-request-id` and counted.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core import PipelineClient
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    NetworkTraceLoggingPolicy,
    RedirectPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from shared.errors import WorkspaceError
from workspaces.azure.cloud import CloudEndpoints
from workspaces.azure.errors import redact
from workspaces.azure.retry import BoundedRetryPolicy
from workspaces.azure.telemetry import AzureCallPolicy
from workspaces.types import AzureCoordinates

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

USER_AGENT = "amlbot"
WORKSPACE_API_VERSION = "2024-04-01"

# An ended job's details are a nicety on an announcement that waits for them: a slow or
# failing service may cost it seconds, not the minutes other calls may retry for.
DETAILS_RETRIES = 2
DETAILS_TOTAL_SECONDS = 30.0
DETAILS_MAX_RETRY_AFTER_SECONDS = 10.0
DETAILS_TIMEOUTS = {"connection_timeout": 10.0, "read_timeout": 20.0}


@dataclass(frozen=True)
class Connection:
    """How to reach a cloud: endpoints, credential, TLS trust, retries."""

    endpoints: CloudEndpoints
    credential: TokenCredential
    retry_policy: BoundedRetryPolicy
    # True: the system trust store, or REQUESTS_CA_BUNDLE when set; a path: that CA bundle.
    connection_verify: bool | str = True
    # Logs and counts each attempt of each request, in every client of this connection.
    call_policy: AzureCallPolicy = field(default_factory=AzureCallPolicy)

    def transport_kwargs(self) -> dict[str, Any]:
        return {"connection_verify": self.connection_verify}

    def sdk_kwargs(self) -> dict[str, Any]:
        """For an SDK client: TLS trust, and the call policy after its retry policy."""
        return {**self.transport_kwargs(), "per_retry_policies": [self.call_policy]}

    def pipeline(
        self,
        base_url: str,
        scope: str,
        *,
        retry_policy: BoundedRetryPolicy | None = None,
        timeouts: dict[str, float] | None = None,
        service: str = "arm",
    ) -> PipelineClient[Any, Any]:
        policies = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker=USER_AGENT),
            ContentDecodePolicy(),
            RedirectPolicy(),
            retry_policy or self.retry_policy,
            BearerTokenCredentialPolicy(self.credential, scope),
            self.call_policy.for_service(service),
            NetworkTraceLoggingPolicy(),
        ]
        return PipelineClient(
            base_url,
            policies=policies,
            transport=self._transport(timeouts),
        )

    def anonymous_pipeline(
        self,
        *,
        retry_policy: BoundedRetryPolicy | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> PipelineClient[Any, Any]:
        """For URLs that need no token or carry their own (a SAS). No bearer token may go
        there, and no policy that can log a URL is in the way."""
        _keep_sas_out_of_transport_logs()
        policies = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker=USER_AGENT),
            RedirectPolicy(),
            retry_policy or self.retry_policy,
            self.call_policy.for_service("storage"),
        ]
        return PipelineClient(
            "",
            policies=policies,
            transport=self._transport(timeouts),
        )

    def _transport(self, timeouts: dict[str, float] | None) -> RequestsTransport:
        return shared_transport(self.connection_verify, timeouts)

    def details_retry_policy(self) -> BoundedRetryPolicy:
        return self.retry_policy.tightened(
            retries=DETAILS_RETRIES,
            total_seconds=DETAILS_TOTAL_SECONDS,
            max_retry_after_seconds=DETAILS_MAX_RETRY_AFTER_SECONDS,
        )


# Connections kept open per host, for all the workspaces at once (a sweep calls them side by
# side; more would be opened and thrown away, each with a TLS handshake).
POOL_MAXSIZE = 32
_transports: dict[tuple[str, tuple[tuple[str, float], ...]], RequestsTransport] = {}
_transports_lock = threading.Lock()


def shared_transport(
    connection_verify: bool | str, timeouts: dict[str, float] | None
) -> RequestsTransport:
    """One connection pool per TLS trust and timeouts, shared by every workspace's clients:
    50 workspaces reuse a few connections instead of opening 50."""
    import requests
    from azure.core.pipeline.transport._requests_basic import (  # type: ignore[attr-defined]
        BiggerBlockSizeHTTPAdapter,
    )
    from urllib3 import Retry

    key = (str(connection_verify), tuple(sorted((timeouts or {}).items())))
    with _transports_lock:
        transport = _transports.get(key)
        if transport is None:
            session = requests.Session()
            # What azure-core does to a session it owns: no retries below its own policy.
            adapter = BiggerBlockSizeHTTPAdapter(
                max_retries=Retry(total=False, redirect=False, raise_on_status=False),
                pool_connections=10,
                pool_maxsize=POOL_MAXSIZE,
            )
            for scheme in ("http://", "https://"):
                session.mount(scheme, adapter)
            transport = RequestsTransport(
                session=session,
                session_owner=False,
                connection_verify=connection_verify,
                **(timeouts or {}),
            )
            _transports[key] = transport
        return transport


class _SasRedactingFilter(logging.Filter):
    """urllib3 logs each request line, query string and all, at DEBUG: for a log blob that
    is its SAS. The signature is redacted before any handler sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_sas_filter_lock = threading.Lock()
_sas_filter = _SasRedactingFilter()


def _keep_sas_out_of_transport_logs() -> None:
    with _sas_filter_lock:
        for name in ("urllib3.connectionpool", "urllib3.util.retry"):
            logger = logging.getLogger(name)
            if _sas_filter not in logger.filters:
                logger.addFilter(_sas_filter)


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
