"""Datastores: identity-based by default, names checked first, secrets only from Key Vault."""

from __future__ import annotations

import pytest

from shared.errors import ConflictError, NotFoundError, WorkspaceError
from tests.fakes.azure_arm import FakeAzure
from workspaces.azure.backend import AzureWorkspace
from workspaces.types import AzureCoordinates, DatastoreKind, DatastoreSpec

SECRET = "c2VjcmV0LWFjY291bnQta2V5LW5ldmVyLXNob3du=="


def spec(**changes: object) -> DatastoreSpec:
    values: dict[str, object] = {
        "name": "sales_raw",
        "kind": DatastoreKind.BLOB,
        "account": "stsales",
        "container": "raw",
        "tags": {"amlbot-request": "12", "amlbot-requester": "alice"},
    }
    values.update(changes)
    return DatastoreSpec.model_validate(values)


def test_blob_datastore_is_a_put_without_credentials(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    info = backend.register_datastore(spec())

    [put] = fake.calls_to("PUT", "/datastores/sales_raw$")
    props = put.body["properties"]
    assert props["datastoreType"] == "AzureBlob"
    assert props["credentials"] == {"credentialsType": "None"}
    assert (props["accountName"], props["containerName"]) == ("stsales", "raw")
    assert props["tags"]["amlbot-request"] == "12"
    assert (info.name, info.kind, info.credentials) == ("sales_raw", "blob", "identity")


@pytest.mark.parametrize(
    ("kind", "azure_type", "field"),
    [
        (DatastoreKind.ADLS_GEN2, "AzureDataLakeGen2", "filesystem"),
        (DatastoreKind.FILE, "AzureFile", "fileShareName"),
    ],
)
def test_adls_and_file_datastores_are_identity_based(
    backend: AzureWorkspace, fake: FakeAzure, kind: DatastoreKind, azure_type: str, field: str
) -> None:
    backend.register_datastore(spec(kind=kind))

    [put] = fake.calls_to("PUT", "/datastores/sales_raw$")
    assert put.body["properties"]["datastoreType"] == azure_type
    assert put.body["properties"][field] == "raw"
    assert put.body["properties"]["credentials"] == {"credentialsType": "None"}


def test_a_taken_name_is_a_conflict_and_nothing_is_put(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    with pytest.raises(ConflictError, match="workspaceblobstore already exists"):
        backend.register_datastore(spec(name="workspaceblobstore"))

    assert fake.calls_to("PUT", "/datastores/") == []


def test_credential_based_datastore_takes_its_key_from_key_vault(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    fake.key_vault_secrets["sales-key"] = SECRET

    info = backend.register_datastore(spec(key_vault_secret="sales-key"))

    [put] = fake.calls_to("PUT", "/datastores/sales_raw$")
    credentials = put.body["properties"]["credentials"]
    assert credentials["credentialsType"] == "AccountKey"
    assert credentials["secrets"]["key"] == SECRET
    assert SECRET not in repr(info)


def test_a_missing_key_vault_secret_is_named_without_any_secret(
    backend: AzureWorkspace, fake: FakeAzure
) -> None:
    with pytest.raises(NotFoundError, match="secret 'sales-key'"):
        backend.register_datastore(spec(key_vault_secret="sales-key"))

    assert fake.calls_to("PUT", "/datastores/") == []


def test_without_a_configured_key_vault_a_secret_is_refused(
    fake: FakeAzure, coords: AzureCoordinates, backend: AzureWorkspace
) -> None:
    backend._key_vault = None

    with pytest.raises(WorkspaceError, match=r"datastores\.key_vault"):
        backend.register_datastore(spec(key_vault_secret="sales-key"))


def test_datastores_are_listed_with_their_kind_of_credentials(backend: AzureWorkspace) -> None:
    stores = {store.name: store for store in backend.list_datastores()}

    assert stores["workspaceblobstore"].is_default
    assert stores["workspaceblobstore"].credentials == "identity"
    assert stores["workspacefilestore"].kind == "file"
    assert stores["workspacefilestore"].credentials == "account_key"


def test_a_registered_datastore_is_listed_with_the_tags_that_name_its_request(
    backend: AzureWorkspace,
) -> None:
    backend.register_datastore(spec())

    [listed] = [d for d in backend.list_datastores() if d.name == "sales_raw"]

    # How a resumed request recognises the datastore its interrupted attempt registered.
    assert listed.tags == {"amlbot-request": "12", "amlbot-requester": "alice"}


def test_a_workspace_without_a_default_datastore_lists_and_registers(
    backend: AzureWorkspace, fake: FakeAzure, coords: AzureCoordinates
) -> None:
    for store in fake.workspace(coords).datastores.values():
        store["properties"]["isDefault"] = False

    stores = backend.list_datastores()

    assert stores and not any(store.is_default for store in stores)
    assert backend.register_datastore(spec()).name == "sales_raw"
