"""Which endpoints a cloud has: public Azure, the sovereign clouds, or a custom one.

Every client the backend builds takes its endpoints and token scopes from `CloudEndpoints`,
so a sovereign or custom cloud is honoured everywhere or nowhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from workspaces.azure.settings import CloudConfig


@dataclass(frozen=True)
class CloudEndpoints:
    name: str  # AzureCloud | AzureUSGovernment | AzureChinaCloud | custom
    resource_manager: str  # no trailing slash
    active_directory: str
    studio: str
    graph: str
    key_vault_suffix: str
    storage_suffix: str
    portal: str
    aml_resource: str

    @property
    def arm_scope(self) -> str:
        return f"{self.resource_manager}/.default"

    @property
    def graph_scope(self) -> str:
        return f"{self.graph}/.default"

    @property
    def key_vault_scope(self) -> str:
        return f"https://{self.key_vault_suffix}/.default"

    @property
    def sdk_cloud_name(self) -> str:
        """The name azure-ai-ml knows this cloud by.

        The SDK keeps clouds in a module-global table and will not overwrite an entry, so a
        custom cloud gets a name derived from its endpoint: one name per endpoint.
        """
        if self.name != "custom":
            return self.name
        digest = hashlib.sha256(self.resource_manager.lower().encode()).hexdigest()[:12]
        return f"amlbot-custom-{digest}"

    def sdk_cloud_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `MLClient`: the cloud, and its metadata when custom."""
        kwargs: dict[str, Any] = {"cloud": self.sdk_cloud_name}
        if self.name == "custom":
            kwargs["cloud_metadata"] = {
                "azure_portal": self.portal + "/",
                "resource_manager": self.resource_manager + "/",
                "active_directory": self.active_directory + "/",
                "aml_resource_id": self.aml_resource + "/",
                "storage_endpoint": self.storage_suffix,
                "registry_discovery_endpoint": self.resource_manager + "/",
            }
        return kwargs


_KNOWN = {
    "AzureCloud": CloudEndpoints(
        name="AzureCloud",
        resource_manager="https://management.azure.com",
        active_directory="https://login.microsoftonline.com",
        studio="https://ml.azure.com",
        graph="https://graph.microsoft.com",
        key_vault_suffix="vault.azure.net",
        storage_suffix="core.windows.net",
        portal="https://portal.azure.com",
        aml_resource="https://ml.azure.com",
    ),
    "AzureUSGovernment": CloudEndpoints(
        name="AzureUSGovernment",
        resource_manager="https://management.usgovcloudapi.net",
        active_directory="https://login.microsoftonline.us",
        studio="https://ml.azure.us",
        graph="https://graph.microsoft.us",
        key_vault_suffix="vault.usgovcloudapi.net",
        storage_suffix="core.usgovcloudapi.net",
        portal="https://portal.azure.us",
        aml_resource="https://ml.azure.us",
    ),
    "AzureChinaCloud": CloudEndpoints(
        name="AzureChinaCloud",
        resource_manager="https://management.chinacloudapi.cn",
        active_directory="https://login.chinacloudapi.cn",
        studio="https://studio.ml.azure.cn",
        graph="https://microsoftgraph.chinacloudapi.cn",
        key_vault_suffix="vault.azure.cn",
        storage_suffix="core.chinacloudapi.cn",
        portal="https://portal.azure.cn",
        aml_resource="https://ml.azure.cn",
    ),
}


def endpoints_for(cloud: CloudConfig, *, graph: str | None = None) -> CloudEndpoints:
    """Endpoints for a configured cloud. `graph` (or `cloud.graph`) overrides Microsoft
    Graph's address; a custom cloud otherwise uses public Graph."""
    graph = graph or cloud.graph
    if cloud.name != "custom":
        known = _KNOWN[cloud.name]
        if graph is None:
            return known
        return CloudEndpoints(**{**known.__dict__, "graph": graph.rstrip("/")})
    public = _KNOWN["AzureCloud"]
    assert cloud.resource_manager is not None  # CloudConfig validates it for custom
    resource_manager = cloud.resource_manager.rstrip("/")
    return CloudEndpoints(
        name="custom",
        resource_manager=resource_manager,
        active_directory=(cloud.active_directory or public.active_directory).rstrip("/"),
        studio=(cloud.studio or public.studio).rstrip("/"),
        graph=(graph or public.graph).rstrip("/"),
        key_vault_suffix=(cloud.key_vault_suffix or public.key_vault_suffix),
        storage_suffix=public.storage_suffix,
        portal=resource_manager,
        aml_resource=(cloud.studio or public.aml_resource).rstrip("/"),
    )
