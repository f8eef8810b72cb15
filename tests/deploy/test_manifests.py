"""The Kubernetes manifests in deploy/: valid against the Kubernetes schemas (offline, strict:
an unknown or misspelt field fails), and every pod meets the "restricted" Pod Security
Standard (https://kubernetes.io/docs/concepts/security/pod-security-standards/), plus a
read-only root file system."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = latest_version()

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


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every document of deploy/*.yml that is a Kubernetes object, named `file:kind/name`."""
    found = []
    for path in sorted((ROOT / "deploy").glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


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


def test_deploy_holds_the_kubernetes_objects_a_deployment_needs() -> None:
    kinds = sorted(name.split(":", 1)[1] for name, _ in MANIFESTS)
    assert kinds == [
        "Deployment/amlbot-web",
        "Deployment/amlbot-work",
        "PodDisruptionBudget/amlbot-web",
        "PodDisruptionBudget/amlbot-work",
        "Service/amlbot",
        "ServiceAccount/amlbot",
    ]


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=[name for name, _ in MANIFESTS])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    name: str, doc: dict[str, Any]
) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=[name for name, _ in MANIFESTS])
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


def test_pods_run_a_versioned_image_probe_their_endpoints_and_are_scraped() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, doc in MANIFESTS:
        spec = pod_spec(doc)
        if spec is None:
            continue
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert spec["serviceAccountName"] == "amlbot", name
        assert spec["topologySpreadConstraints"], name
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert container["image"] == f"amlbot:{version}", name
        for container in spec["containers"]:
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name


def test_each_deployment_has_a_disruption_budget_selecting_its_pods() -> None:
    docs = [doc for _, doc in MANIFESTS]
    budgets = [d["spec"]["selector"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        assert deployment["spec"]["selector"] in budgets, deployment["metadata"]["name"]


def test_the_service_account_carries_the_workload_identity_annotation() -> None:
    account = next(doc for _, doc in MANIFESTS if doc["kind"] == "ServiceAccount")
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
