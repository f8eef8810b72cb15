"""Datastores: listed, and registered identity-based (no secret at all) unless a secret that
already sits in the configured Key Vault is named. Secrets never come from chat."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from shared.errors import ConflictError, WorkspaceError
from shared.values import DatastoreKind
from workspaces.azure.clients import RestClient, WorkspaceClients
from workspaces.azure.errors import translated
from workspaces.types import DatastoreInfo, DatastoreSpec

KEY_VAULT_API_VERSION = "7.4"
_SDK_KINDS = {
    "azureblob": "blob",
    "azuredatalakegen2": "adls-gen2",
    "azurefile": "file",
    "azuredatalakegen1": "adls-gen1",
}


def list_datastores(clients: WorkspaceClients) -> list[DatastoreInfo]:
    with translated(f"listing the datastores of workspace {clients.coordinates.workspace_name}"):
        ml = clients.ml()
        stores = list(ml.datastores.list())
        # The SDK's Datastore entity drops `isDefault`; Azure answers it with one more call.
        default = _default_name(ml)
    return sorted(
        (_info(store, is_default=store.name == default) for store in stores),
        key=lambda info: info.name,
    )


def _default_name(ml: Any) -> str | None:
    """The default datastore's name; None in a workspace that has none (azure-ai-ml's
    `get_default` then raises StopIteration from its `next()` over an empty list)."""
    try:
        return str(ml.datastores.get_default().name)
    except StopIteration:
        return None


def _info(store: Any, *, is_default: bool = False) -> DatastoreInfo:
    raw_type = getattr(store, "type", "") or ""
    kind = str(getattr(raw_type, "value", raw_type)).replace("_", "").lower()
    return DatastoreInfo(
        name=store.name,
        kind=_SDK_KINDS.get(kind, kind or "unknown"),
        account=getattr(store, "account_name", None),
        container=(
            getattr(store, "container_name", None)
            or getattr(store, "filesystem", None)
            or getattr(store, "file_share_name", None)
        ),
        is_default=is_default,
        credentials=_credential_kind(getattr(store, "credentials", None)),
        description=getattr(store, "description", None),
        tags={str(k): str(v) for k, v in (getattr(store, "tags", None) or {}).items()},
    )


def _credential_kind(credentials: Any) -> str:
    name = type(credentials).__name__
    return {
        "AccountKeyConfiguration": "account_key",
        "SasTokenConfiguration": "sas",
        "ServicePrincipalConfiguration": "service_principal",
        "CertificateConfiguration": "service_principal",
    }.get(name, "identity")


def register_datastore(
    clients: WorkspaceClients, spec: DatastoreSpec, *, key_vault: str | None
) -> DatastoreInfo:
    workspace = clients.coordinates.workspace_name
    doing = f"registering datastore {spec.name} in workspace {workspace}"
    credentials = _credentials(clients, spec, key_vault) if spec.key_vault_secret else None
    with translated(doing):
        from azure.core.exceptions import ResourceNotFoundError

        ml = clients.ml()
        # Azure would silently overwrite a datastore of the same name: look first.
        try:
            existing = ml.datastores.get(spec.name)
        except ResourceNotFoundError:
            existing = None
        if existing is not None:
            raise ConflictError(
                f"A datastore named {spec.name} already exists in workspace {workspace} "
                f"(account {getattr(existing, 'account_name', '?')}); pick another name or "
                "use that one."
            )
        created = ml.datastores.create_or_update(_entity(clients, spec, credentials))
    return _info(created)


def _entity(clients: WorkspaceClients, spec: DatastoreSpec, credentials: Any) -> Any:
    from azure.ai.ml.entities import (
        AzureBlobDatastore,
        AzureDataLakeGen2Datastore,
        AzureFileDatastore,
    )

    common: dict[str, Any] = {
        "name": spec.name,
        "account_name": spec.account,
        "description": spec.description,
        "tags": dict(spec.tags),
        "endpoint": clients.endpoints.storage_suffix,
    }
    if spec.kind is DatastoreKind.BLOB:
        return AzureBlobDatastore(container_name=spec.container, credentials=credentials, **common)
    if spec.kind is DatastoreKind.ADLS_GEN2:
        if credentials is not None:
            raise WorkspaceError(
                "An ADLS Gen2 datastore takes a service principal, not an account key or SAS; "
                "register it identity-based (without a Key Vault secret)."
            )
        return AzureDataLakeGen2Datastore(filesystem=spec.container, **common)
    return AzureFileDatastore(file_share_name=spec.container, credentials=credentials, **common)


def _credentials(clients: WorkspaceClients, spec: DatastoreSpec, key_vault: str | None) -> Any:
    """Account key or SAS credentials from the configured Key Vault (never from chat)."""
    from azure.ai.ml.entities import AccountKeyConfiguration, SasTokenConfiguration

    if not key_vault:
        raise WorkspaceError(
            f"Datastore {spec.name} names Key Vault secret '{spec.key_vault_secret}', but no Key "
            "Vault is configured for this workspace (policy `datastores.key_vault`). Register "
            "it identity-based instead, or ask an administrator to configure the vault."
        )
    secret = read_key_vault_secret(clients, key_vault, str(spec.key_vault_secret))
    if secret.lstrip("?").startswith("sv="):
        return SasTokenConfiguration(sas_token=secret.lstrip("?"))
    return AccountKeyConfiguration(account_key=secret)


def read_key_vault_secret(clients: WorkspaceClients, key_vault: str, secret_name: str) -> str:
    """A secret's value, read with the bot's identity. The value is never logged or shown."""
    endpoints = clients.endpoints
    if "://" in key_vault:
        vault_url = key_vault.rstrip("/")
        parts = urlsplit(vault_url)
        # A custom cloud's vaults have their own audience; public clouds share one per cloud.
        scope = (
            f"{parts.scheme}://{parts.netloc}/.default"
            if endpoints.name == "custom"
            else endpoints.key_vault_scope
        )
    else:
        vault_url = f"https://{key_vault}.{endpoints.key_vault_suffix}"
        scope = endpoints.key_vault_scope
    client = RestClient(
        clients.connection.pipeline(vault_url, scope, service="key_vault"), vault_url
    )
    with translated(f"reading secret '{secret_name}' from Key Vault {key_vault}"):
        body = client.request(
            "GET",
            f"/secrets/{quote(secret_name, safe='')}",
            params={"api-version": KEY_VAULT_API_VERSION},
        )
    value = body.get("value") if isinstance(body, dict) else None
    if not value:
        raise WorkspaceError(f"Key Vault secret '{secret_name}' in {key_vault} is empty.")
    return str(value)
