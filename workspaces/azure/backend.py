"""`AzureWorkspace`: the workspace port on a real Azure ML workspace."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from workspaces.azure import computes, cost_management, datastores, jobs, quota, run_history
from workspaces.azure.clients import WorkspaceClients
from workspaces.azure.cloud import endpoints_for
from workspaces.azure.connection import Connection
from workspaces.azure.errors import translated
from workspaces.azure.rbac import RoleAccess
from workspaces.azure.retry import BoundedRetryPolicy, RetrySettings
from workspaces.azure.settings import CloudConfig
from workspaces.azure.telemetry import AzureCallPolicy, Recorder
from workspaces.types import (
    AccessAssignment,
    AzureCoordinates,
    ComputeInventory,
    DatastoreInfo,
    DatastoreSpec,
    GrantReceipt,
    JobInfo,
    JobOutcome,
    JobSpec,
    RoleGrantSpec,
    SpendToDate,
    VmQuota,
)

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential


_credentials: dict[tuple[str, str, str], SharedCredential] = {}
_credentials_lock = threading.Lock()


def default_credential(cloud: CloudConfig) -> SharedCredential:
    """`DefaultAzureCredential` signing in at the cloud's Entra ID authority: a managed
    identity in production, environment variables or `az login` in development.

    One per cloud and identity, shared by every workspace: its token cache then serves them
    all, so 50 workspaces fetch one token, not 50. The identity is what the credential reads
    from the environment when made (AZURE_CLIENT_ID picks a user-assigned identity)."""
    from azure.identity import DefaultAzureCredential

    authority = endpoints_for(cloud).active_directory
    key = (authority, os.environ.get("AZURE_CLIENT_ID", ""), os.environ.get("AZURE_TENANT_ID", ""))
    with _credentials_lock:
        credential = _credentials.get(key)
        if credential is None:
            credential = SharedCredential(DefaultAzureCredential(authority=authority))
            _credentials[key] = credential
        return credential


# A token is fetched anew this long before it expires.
TOKEN_REFRESH_MARGIN_SECONDS = 300


class SharedCredential:
    """A credential many workspaces' clients share: one token per scope, fetched by one
    caller while the others wait for it (sweeps call every workspace at once, and each
    client's first request would otherwise fetch a token of its own), and kept until
    `TOKEN_REFRESH_MARGIN_SECONDS` before it expires."""

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner
        self._tokens: dict[tuple[Any, ...], AccessToken] = {}
        self._lock = threading.Lock()
        self.fetched = 0  # tokens fetched from the inner credential, for figures

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        key = (scopes, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_on - TOKEN_REFRESH_MARGIN_SECONDS < time.time():
                token = self._inner.get_token(*scopes, **kwargs)
                self._tokens[key] = token
                self.fetched += 1
            return token

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class AzureWorkspace:
    """One Azure ML workspace behind the `WorkspaceBackend` port. Thread-safe: clients are
    made once, on first use, and shared."""

    def __init__(
        self,
        coordinates: AzureCoordinates,
        credential: TokenCredential | None,
        cloud: CloudConfig,
        *,
        environments: Sequence[str] = (),
        key_vault: str | None = None,
        connection_verify: bool | str = True,
        graph_endpoint: str | None = None,
        retry: RetrySettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_azure_call: Recorder | None = None,
    ) -> None:
        self.coordinates = coordinates
        self.retry_settings = retry or RetrySettings()
        connection = Connection(
            endpoints=endpoints_for(cloud, graph=graph_endpoint),
            credential=credential or default_credential(cloud),
            retry_policy=BoundedRetryPolicy(self.retry_settings, sleep=sleep),
            connection_verify=connection_verify,
            call_policy=AzureCallPolicy(on_azure_call),
        )
        self.clients = WorkspaceClients(coordinates, connection)
        self.access = RoleAccess(self.clients)
        self._environments = list(environments)
        self._key_vault = key_vault

    def list_computes(self) -> ComputeInventory:
        return computes.list_computes(self.clients)

    def month_to_date_cost(self) -> SpendToDate | None:
        return cost_management.month_to_date_cost(self.clients)

    def vm_quota(self, vm_size: str) -> VmQuota | None:
        return quota.vm_quota(self.clients, vm_size)

    def grant_cluster_access(self, grant: RoleGrantSpec) -> GrantReceipt:
        return self.access.grant(grant)

    def revoke_cluster_access(self, grant: RoleGrantSpec) -> None:
        self.access.revoke(grant)

    def extend_cluster_access(self, grant: RoleGrantSpec, new_expiry: datetime) -> GrantReceipt:
        return self.access.extend(grant, new_expiry)

    def list_access_assignments(self, role_name: str) -> list[AccessAssignment]:
        return self.access.list_at_workspace(role_name)

    def access_assignment_exists(self, grant: RoleGrantSpec) -> bool:
        return self.access.exists(grant)

    def list_datastores(self) -> list[DatastoreInfo]:
        return datastores.list_datastores(self.clients)

    def register_datastore(self, spec: DatastoreSpec) -> DatastoreInfo:
        return datastores.register_datastore(self.clients, spec, key_vault=self._key_vault)

    def list_environments(self) -> list[str]:
        """The configured (curated) environments, then the workspace's own, as NAME@latest."""
        with translated(f"listing environments in workspace {self.coordinates.workspace_name}"):
            own = [f"{env.name}@latest" for env in self.clients.ml().environments.list()]
        return list(dict.fromkeys([*self._environments, *own]))

    def submit_job(self, spec: JobSpec) -> JobInfo:
        return jobs.submit_job(self.clients, spec)

    def get_job(self, name: str) -> JobInfo:
        return jobs.get_job(self.clients, name)

    def list_jobs(self, *, tag_filter: dict[str, str] | None = None) -> list[JobInfo]:
        return jobs.list_jobs(self.clients, tag_filter)

    def cancel_job(self, name: str) -> JobInfo:
        return jobs.cancel_job(self.clients, name)

    def job_outcome(self, name: str) -> JobOutcome:
        return run_history.job_outcome(self.clients, name)

    def stop_instance(self, name: str) -> None:
        computes.stop_instance(self.clients, name)

    def set_cluster_min_nodes(self, name: str, min_nodes: int) -> None:
        computes.set_cluster_min_nodes(self.clients, name, min_nodes)

    def set_cluster_idle_time(self, name: str, seconds: int) -> None:
        computes.set_cluster_idle_time(self.clients, name, seconds)

    def set_instance_idle_shutdown(self, name: str, minutes: int) -> None:
        computes.set_instance_idle_shutdown(self.clients, name, minutes)
