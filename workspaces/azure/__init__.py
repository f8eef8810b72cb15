"""The workspace port on real Azure: azure-ai-ml, azure-mgmt-authorization, azure-identity.

Importing this package imports no Azure SDK; `AzureWorkspace` and the clients load on
first use. Modules: `cloud` (endpoints per cloud), `clients` (lazily built, shared
clients), `retry` and `errors` (bounded retries, Azure errors in plain words), then one
module per concern: `computes`, `rbac`, `datastores`, `jobs`, `run_history` (an ended
job's times, error and log tail), and `online` (the `check-config --online` checks).
`backend.AzureWorkspace` ties them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from workspaces.azure.backend import AzureWorkspace
    from workspaces.azure.settings import AzureWorkspaceSettings, CloudConfig
    from workspaces.port import WorkspaceBackend

__all__ = ["AzureWorkspace", "check_workspace_online", "make_azure_workspace"]


def make_azure_workspace(
    ws: AzureWorkspaceSettings,
    cloud: CloudConfig,
    credential: TokenCredential | None = None,
    **options: Any,
) -> WorkspaceBackend:
    """The backend for a workspace configured with `backend: azure`.

    `credential` defaults to `DefaultAzureCredential` for the cloud's authority. `options`
    go to `AzureWorkspace` (`connection_verify`, `graph_endpoint`, `retry`, `sleep`,
    `on_azure_call`: told of every HTTP attempt, for metrics).
    """
    from workspaces.azure.backend import AzureWorkspace

    return AzureWorkspace(
        ws.coordinates,
        credential,
        cloud,
        environments=ws.environments,
        key_vault=ws.key_vault,
        **options,
    )


def check_workspace_online(
    ws: AzureWorkspaceSettings,
    cloud: CloudConfig,
    credential: TokenCredential | None = None,
    **options: Any,
) -> list[str]:
    """Problems with a workspace as the bot's identity sees it; empty when all is well."""
    from workspaces.azure.backend import AzureWorkspace
    from workspaces.azure.online import check_workspace

    backend = make_azure_workspace(ws, cloud, credential, **options)
    assert isinstance(backend, AzureWorkspace)
    return check_workspace(backend, ws)


def __getattr__(name: str) -> Any:
    if name == "AzureWorkspace":
        from workspaces.azure.backend import AzureWorkspace

        return AzureWorkspace
    raise AttributeError(name)
