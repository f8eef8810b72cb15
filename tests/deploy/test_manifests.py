"""The Kubernetes manifests: the Kustomize base in deploy/kubernetes/base and each overlay in
deploy/kubernetes/overlays, rendered offline (`tests/deploy/kustomize.py`, held to
`kubectl kustomize` wherever kubectl is installed), each rendered object valid against the
Kubernetes schemas (offline, strict: an unknown or misspelt field fails), and every pod
meeting the "restricted" Pod Security Standard
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), plus a read-only
root file system."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from approvals.config import parse_config
from tests.deploy.kustomize import GENERATED_SUFFIX, render

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = latest_version()
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# Kinds whose pod template sits at spec.template.spec (CronJob one level deeper).
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
KUSTOMIZATIONS = sorted(
    path.parent.relative_to(KUBERNETES).as_posix()
    for path in KUBERNETES.rglob("kustomization.yaml")
)
OVERLAYS = [name for name in KUSTOMIZATIONS if name.startswith("overlays/")]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every object of every rendered kustomization, named `kustomization:kind/name`."""
    return [
        (f"{name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for name in KUSTOMIZATIONS
        for doc in render(KUBERNETES / name)
    ]


def rendered(name: str) -> list[dict[str, Any]]:
    return render(KUBERNETES / name)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc["kind"]
    if kind == "Pod":
        return dict(doc["spec"])
    if kind in WORKLOADS:
        return dict(doc["spec"]["template"]["spec"])
    if kind == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Where a pod spec falls short of the restricted profile (and of a read-only root)."""
    problems = []
    pod = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field} is set")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} is {', '.join(sorted(kinds))}")
    if pod.get("runAsUser") == 0:
        problems.append("the pod runs as user 0")
    containers = [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    for container in containers:
        name = container["name"]
        own = container.get("securityContext") or {}
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities beyond NET_BIND_SERVICE")
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as user 0")
        seccomp = (own.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: uses a hostPort")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: the root file system is writable")
    return problems


MANIFESTS = manifests()
IDS = [name for name, _ in MANIFESTS]


def test_there_is_a_base_and_overlays_and_no_other_copy_of_the_manifests() -> None:
    assert KUSTOMIZATIONS[0] == "base" and len(OVERLAYS) >= 2
    assert not (ROOT / "deploy" / "kubernetes.yml").exists()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_each_kustomization_holds_the_objects_a_deployment_needs(name: str) -> None:
    kinds = sorted(
        f"{doc['kind']}/{GENERATED_SUFFIX.sub('', doc['metadata']['name'])}"
        for doc in rendered(name)
    )
    assert kinds == [
        "ConfigMap/amlbot-config",
        "Deployment/amlbot-web",
        "Deployment/amlbot-work",
        "PodDisruptionBudget/amlbot-web",
        "PodDisruptionBudget/amlbot-work",
        "Service/amlbot",
        "ServiceAccount/amlbot",
    ]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_offline_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    printed = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    theirs = [doc for doc in yaml.safe_load_all(printed) if doc]
    # The generated ConfigMap's hash suffix is the one difference allowed.
    assert _normalised(rendered(name)) == _normalised(theirs)


def _normalised(docs: list[dict[str, Any]]) -> list[str]:
    """Each object as sorted JSON, generated names' hash suffixes blanked, in name order."""
    dumped = [json.dumps(doc, sort_keys=True) for doc in docs]
    return sorted(re.sub(r"(amlbot-config)-[a-z0-9]{10}\b", r"\1-HASH", text) for text in dumped)


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=IDS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    name: str, doc: dict[str, Any]
) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=IDS)
def test_every_pod_meets_the_restricted_pod_security_standard(
    name: str, doc: dict[str, Any]
) -> None:
    spec = pod_spec(doc)
    if spec is not None:
        assert restricted_violations(spec) == []


def test_the_restricted_check_finds_what_the_default_pod_allows() -> None:
    spec = {
        "hostNetwork": True,
        "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
        "containers": [
            {
                "name": "app",
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                "ports": [{"containerPort": 80, "hostPort": 80}],
            }
        ],
    }
    assert restricted_violations(spec) == [
        "hostNetwork is set",
        "volume docker is hostPath",
        "app: allowPrivilegeEscalation is not false",
        "app: capabilities do not drop ALL",
        "app: adds capabilities beyond NET_BIND_SERVICE",
        "app: runAsNonRoot is not true",
        "app: seccompProfile is not RuntimeDefault or Localhost",
        "app: uses a hostPort",
        "app: the root file system is writable",
    ]


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=IDS)
def test_pods_run_the_versioned_image_probe_their_endpoints_and_are_scraped(
    name: str, doc: dict[str, Any]
) -> None:
    spec = pod_spec(doc)
    if spec is None:
        return
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert spec["serviceAccountName"] == "amlbot"
    keys = {constraint["topologyKey"] for constraint in spec["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        assert container["image"].rsplit("/", 1)[-1] == f"amlbot:{VERSION}"
    for container in spec["containers"]:
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert (
            str(ports[container["readinessProbe"]["httpGet"]["port"]])
            == (annotations["prometheus.io/port"])
        )
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=IDS)
def test_every_container_requests_memory_below_its_limit(name: str, doc: dict[str, Any]) -> None:
    spec = pod_spec(doc)
    for container in [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]:
        resources = container["resources"]
        request = _mebibytes(resources["requests"]["memory"])
        limit = _mebibytes(resources["limits"]["memory"])
        assert resources["requests"]["cpu"] and 0 < request < limit


def _mebibytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_each_deployment_has_a_disruption_budget_selecting_its_pods(name: str) -> None:
    docs = rendered(name)
    budgets = [budget["spec"]["selector"] for budget in of_kind(docs, "PodDisruptionBudget")]
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["selector"] in budgets, deployment["metadata"]["name"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_pods_mount_the_generated_config_map_and_it_is_a_valid_configuration(
    name: str,
) -> None:
    docs = rendered(name)
    [config_map] = of_kind(docs, "ConfigMap")
    parse_config(config_map["data"]["config.yml"], f"{name} ConfigMap")
    for deployment in of_kind(docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
        for container in spec["containers"]:
            env = {variable["name"]: variable.get("value") for variable in container["env"]}
            assert env["AMLBOT_CONFIG"] == "/etc/amlbot/config.yml"
            assert {"secretRef": {"name": "amlbot"}} in container["envFrom"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_overlay_names_its_namespace_and_its_managed_identity(name: str) -> None:
    docs = rendered(name)
    assert all(doc["metadata"].get("namespace") for doc in docs)
    [account] = of_kind(docs, "ServiceAccount")
    client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", client_id)


def test_the_socket_mode_overlay_runs_the_edge_without_http() -> None:
    deployments = of_kind(rendered("overlays/socket-mode"), "Deployment")
    [web] = [d for d in deployments if d["metadata"]["name"] == "amlbot-web"]
    [container] = web["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "--port", "3000"]
