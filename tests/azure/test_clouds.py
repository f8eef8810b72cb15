"""Sovereign and custom clouds: every client uses the configured endpoints and audience."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.azure_arm import FakeAzure
from tests.fakes.azure_credential import FakeCredential
from workspaces.azure.backend import AzureWorkspace
from workspaces.azure.cloud import endpoints_for
from workspaces.azure.settings import CloudConfig
from workspaces.types import AzureCoordinates, DatastoreKind, DatastoreSpec, JobSpec

ROOT = Path(__file__).resolve().parents[2]


def test_custom_cloud_is_used_by_every_client(
    backend: AzureWorkspace, fake: FakeAzure, credential: FakeCredential
) -> None:
    from tests.azure.test_rbac import grant_spec

    backend.list_computes()  # raw ARM pipeline
    backend.grant_cluster_access(grant_spec())  # azure-mgmt-authorization
    backend.register_datastore(  # azure-ai-ml
        DatastoreSpec(name="raw", kind=DatastoreKind.BLOB, account="st", container="raw")
    )
    backend.submit_job(
        JobSpec(name="j1", compute="gpu", environment="AzureML-sklearn-1.5", command="echo")
    )

    assert {scope for scope in credential.scopes_requested} == {f"{fake.base_url}/.default"}
    assert fake.server_errors == []


@pytest.mark.parametrize(
    ("name", "resource_manager", "graph"),
    [
        ("AzureCloud", "https://management.azure.com", "https://graph.microsoft.com"),
        ("AzureUSGovernment", "https://management.usgovcloudapi.net", "https://graph.microsoft.us"),
        (
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
    ],
)
def test_sovereign_clouds_have_their_own_endpoints(
    name: str, resource_manager: str, graph: str
) -> None:
    endpoints = endpoints_for(CloudConfig(name=name))  # type: ignore[arg-type]

    assert endpoints.resource_manager == resource_manager
    assert endpoints.arm_scope == f"{resource_manager}/.default"
    assert endpoints.graph == graph
    assert endpoints.sdk_cloud_name == name


def test_each_custom_endpoint_gets_its_own_sdk_cloud_name() -> None:
    first = endpoints_for(CloudConfig(name="custom", resource_manager="https://arm.one.example/"))
    second = endpoints_for(CloudConfig(name="custom", resource_manager="https://arm.two.example"))

    assert first.sdk_cloud_name != second.sdk_cloud_name
    assert first.sdk_cloud_kwargs()["cloud_metadata"]["resource_manager"] == (
        "https://arm.one.example/"
    )


def test_default_azure_credential_finds_a_managed_identity(
    fake: FakeAzure, coords: AzureCoordinates, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in fake.managed_identity_env().items():
        monkeypatch.setenv(variable, value)
    backend = AzureWorkspace(coords, None, fake.cloud_config(), **fake.backend_options())

    inventory = backend.list_computes()

    assert inventory.cluster("gpu") is not None
    assert fake.calls_to("GET", "/msi/token$")


def test_importing_the_package_does_not_import_the_sdk() -> None:
    code = "import sys, workspaces.azure; print('azure.ai.ml' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"
