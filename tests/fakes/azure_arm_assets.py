"""Azure ML assets in the fake: environments, code and data versions; and a Key Vault.

Only what a command job refers to: curated and workspace environments (and the anonymous
environment the SDK registers for a Docker image), code assets that point at a URL, data
assets, and Key Vault secrets for credential-based datastores.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.fakes.azure_arm_ml import WS, W, _ws
from tests.fakes.azure_arm_state import ML, ArmError, FakeResponse, WorkspaceState

if TYPE_CHECKING:
    from tests.fakes.azure_arm import FakeAzure, Request

ASSET_VERSIONS = {"2024-04-01", "2023-04-01", "2023-04-01-preview", "2023-08-01-preview"}
CURATED_ENVIRONMENTS = {"AzureML-sklearn-1.5": 12, "AzureML-pytorch-2.2-cuda12": 7}


def register(fake: FakeAzure) -> None:
    route = fake.route
    route(
        "GET",
        f"{WS}/environments",
        list_environments,
        api_versions=ASSET_VERSIONS,
        action=f"{W}/environments/read",
    )
    route(
        "GET",
        f"{WS}/environments/(?P<name>[^/]+)/versions",
        list_environment_versions,
        api_versions=ASSET_VERSIONS,
        action=f"{W}/environments/versions/read",
    )
    route(
        "GET",
        f"{WS}/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
        get_environment_version,
        api_versions=ASSET_VERSIONS,
        action=f"{W}/environments/versions/read",
    )
    route(
        "PUT",
        f"{WS}/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
        put_environment_version,
        api_versions=ASSET_VERSIONS,
        action=f"{W}/environments/versions/write",
    )
    asset = r"/(?P<kind>codes|data)/(?P<name>[^/]+)/versions/(?P<version>[^/]+)"
    # Microsoft's v2 actions for asset versions: `workspaces/<asset>/versions/<verb>`.
    route(
        "GET",
        f"{WS}{asset}",
        get_asset_version,
        api_versions=ASSET_VERSIONS,
        action=lambda m: f"{W}/{m['kind']}/versions/read",
    )
    route(
        "PUT",
        f"{WS}{asset}",
        put_asset_version,
        api_versions=ASSET_VERSIONS,
        action=lambda m: f"{W}/{m['kind']}/versions/write",
    )
    route(
        "GET",
        r"/secrets/(?P<name>[^/]+)",
        get_key_vault_secret,
        api_versions={"7.4"},  # Key Vault's own data-plane access, not this role's
    )


# -- environments ------------------------------------------------------------------------


def _environment_container(ws: WorkspaceState, name: str) -> dict[str, Any]:
    return {
        "id": f"{ws.id}/environments/{name}",
        "name": name,
        "type": f"{ML}/workspaces/environments",
        "properties": {"description": None, "tags": {}, "isArchived": False, "latestVersion": "1"},
    }


def list_environments(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    names = [*CURATED_ENVIRONMENTS, *ws.environments]
    return fake.page(request, [_environment_container(ws, name) for name in names])


def _environment_version(ws: WorkspaceState, name: str, version: str) -> dict[str, Any]:
    return {
        "id": f"{ws.id}/environments/{name}/versions/{version}",
        "name": version,
        "type": f"{ML}/workspaces/environments/versions",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": False,
            "isAnonymous": False,
            "image": "mcr.microsoft.com/azureml/curated/sklearn:12",
            "osType": "Linux",
            "environmentType": "Curated" if name in CURATED_ENVIRONMENTS else "UserCreated",
        },
    }


def _latest_version(ws: WorkspaceState, name: str) -> str:
    if name in CURATED_ENVIRONMENTS:
        return str(CURATED_ENVIRONMENTS[name])
    if name in ws.environments:
        return "1"
    raise ArmError(
        404, "UserError", f"Could not find asset with ID: azureml:{name}. Environment not found."
    )


def list_environment_versions(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    version = _latest_version(ws, m["name"])
    return fake.page(request, [_environment_version(ws, m["name"], version)])


def get_environment_version(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    latest = int(_latest_version(ws, m["name"]))
    if not m["version"].isdigit() or not 1 <= int(m["version"]) <= latest:
        raise ArmError(404, "UserError", f"Environment {m['name']}:{m['version']} not found.")
    return FakeResponse(200, _environment_version(ws, m["name"], m["version"]))


def put_environment_version(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """An anonymous environment the SDK registers for a job given a Docker image."""
    ws = _ws(fake, m)
    props = (request.body or {}).get("properties") if isinstance(request.body, dict) else None
    if not isinstance(props, dict) or not props.get("image"):
        raise ArmError(400, "UserError", "An environment needs properties.image.")
    body = _environment_version(ws, m["name"], m["version"])
    body["properties"].update(props)
    return FakeResponse(201, body)


# -- code and data assets ----------------------------------------------------------------


def get_asset_version(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    ws = _ws(fake, m)
    asset_id = f"{ws.id}/{m['kind']}/{m['name']}/versions/{m['version']}"
    with fake.lock:
        found = ws.assets.get(asset_id.lower())
    if found is None:
        raise ArmError(
            404,
            "UserError",
            f"Could not find asset with ID: {m['kind']} {m['name']}:{m['version']}",
        )
    return FakeResponse(200, copy.deepcopy(found))


def put_asset_version(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    """Code assets that point at a URL (no upload); uploads would need storage calls."""
    ws = _ws(fake, m)
    props = (request.body or {}).get("properties") if isinstance(request.body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(400, "UserError", "The request body needs `properties`.")
    uri = props.get("codeUri") or props.get("dataUri") or ""
    if not str(uri).startswith(("https://", "azureml://")):
        raise ArmError(400, "UserError", f"Asset URI {uri!r} is not a URL.")
    asset_id = f"{ws.id}/{m['kind']}/{m['name']}/versions/{m['version']}"
    body = {
        "id": asset_id,
        "name": m["version"],
        "type": f"{ML}/workspaces/{m['kind']}/versions",
        "properties": props,
    }
    with fake.lock:
        ws.assets[asset_id.lower()] = body
    return FakeResponse(201, copy.deepcopy(body))


def get_key_vault_secret(fake: FakeAzure, request: Request, m: dict[str, str]) -> FakeResponse:
    with fake.lock:
        value = fake.key_vault_secrets.get(m["name"])
    if value is None:
        raise ArmError(404, "SecretNotFound", f"A secret with (name/id) {m['name']} was not found.")
    return FakeResponse(200, {"value": value, "id": f"{fake.base_url}/secrets/{m['name']}/1"})
