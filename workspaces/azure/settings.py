"""What the Azure adapter needs to be told: which cloud, and per workspace where it is and
what it may do. The bot's configuration embeds these (`approvals.config`), so the adapter
can be built and tested without it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workspaces.types import AzureCoordinates


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudConfig(_Strict):
    name: Literal["AzureCloud", "AzureUSGovernment", "AzureChinaCloud", "custom"] = "AzureCloud"
    # Only for name: custom.
    resource_manager: str | None = None
    active_directory: str | None = None
    studio: str | None = None
    # Microsoft Graph (e-mail -> object id) and Key Vault DNS suffix of a custom cloud.
    graph: str | None = None
    key_vault_suffix: str | None = None

    @model_validator(mode="after")
    def _custom_needs_endpoint(self) -> CloudConfig:
        if self.name == "custom" and not self.resource_manager:
            raise ValueError(
                "a custom cloud needs resource_manager, e.g. https://management.contoso.example/"
            )
        return self


class AzureWorkspaceSettings(_Strict):
    """One workspace as the adapter sees it."""

    coordinates: AzureCoordinates
    # Environments offered in forms (NAME@VERSION or NAME@latest).
    environments: list[str] = Field(default_factory=list)
    # Key Vault holding secrets for credential-based datastores.
    key_vault: str | None = None
    # The role a grant gives, and whether grants are time-bound PIM schedules.
    access_role: str = "AzureML Data Scientist"
    access_mode: Literal["rbac", "pim"] = "rbac"
