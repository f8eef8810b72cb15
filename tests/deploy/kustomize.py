"""A small Kustomize renderer, offline and in Python, for the subset deploy/kubernetes uses.

`kubectl kustomize` (Kustomize v5) is the reference; `tests/deploy/test_manifests.py` checks
this renderer gives the same objects wherever kubectl is installed, so the tests of the
rendered manifests also run where it is not. Supported, and refused loudly otherwise:

- `resources`: YAML files, and directories holding a kustomization (a base);
- `namespace`; `images` (`name`, `newName`, `newTag`); `replicas` (`name`, `count`);
- `configMapGenerator` with `files` (`KEY=PATH` or `PATH`) and `behavior` create or
  replace; the name gets a suffix from a hash of the content (ten characters, as
  Kustomize's, though not the same ones), and references to it in pod specs (volumes,
  `envFrom`, `env.valueFrom`) follow;
- `patches` with a `target` (`kind`, `name`) and an inline JSON 6902 patch (add, replace,
  remove).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "replicas",
    "configMapGenerator",
    "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# A generated name's hash suffix, which differs between this renderer and Kustomize.
GENERATED_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


class KustomizeError(Exception):
    pass


def render(directory: Path) -> list[Object]:
    """The objects `kubectl kustomize directory` prints, in no particular order."""
    objects, generated = _build(directory.resolve())
    # The hash covers the final content (after an overlay's replace), as Kustomize's does.
    hashed = {
        obj["metadata"]["name"]: _hashed_name(obj)
        for obj in objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in generated
    }
    return [_with_hashed_names(obj, hashed) for obj in objects]


def _build(root: Path) -> tuple[list[Object], set[str]]:
    """(objects, names of the generated ConfigMaps) of one kustomization."""
    spec = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{root}: this renderer does not support {sorted(unknown)}")
    objects: list[Object] = []
    generated: set[str] = set()
    for entry in spec.get("resources", []):
        path = (root / entry).resolve()
        if path.is_dir():
            base_objects, base_generated = _build(path)
            objects += base_objects
            generated |= base_generated
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        _generate(root, generator, objects)
        generated.add(generator["name"])
    for patch in spec.get("patches", []):
        _patch(patch, objects)
    for image in spec.get("images", []):
        for container in _containers(objects):
            container["image"] = _retag(container["image"], image)
    for replica in spec.get("replicas", []):
        for obj in objects:
            if obj["kind"] in WORKLOADS and obj["metadata"]["name"] == replica["name"]:
                obj["spec"]["replicas"] = replica["count"]
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return objects, generated


def _generate(root: Path, generator: Object, objects: list[Object]) -> None:
    unknown = set(generator) - {"name", "files", "behavior"}
    if unknown:
        raise KustomizeError(f"configMapGenerator: unsupported {sorted(unknown)}")
    data = {}
    for source in generator.get("files", []):
        key, _, path = source.rpartition("=") if "=" in source else ("", "", source)
        data[key or Path(path).name] = (root / path).read_text()
    config_map: Object = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"]},
        "data": data,
    }
    behavior = generator.get("behavior", "create")
    existing = [
        obj
        for obj in objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == generator["name"]
    ]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"ConfigMap {generator['name']} exists already")
        objects.append(config_map)
    elif behavior == "replace":
        if not existing:
            raise KustomizeError(f"no ConfigMap {generator['name']} to replace")
        existing[0]["data"] = data
    else:
        raise KustomizeError(f"configMapGenerator behavior {behavior!r} is not supported")


def _patch(patch: Object, objects: list[Object]) -> None:
    target = patch.get("target") or {}
    operations = yaml.safe_load(patch.get("patch", ""))
    if set(target) - {"kind", "name"} or not isinstance(operations, list):
        raise KustomizeError("only JSON 6902 patches targeting kind and name are supported")
    matched = [
        obj
        for obj in objects
        if obj["kind"] == target.get("kind", obj["kind"])
        and obj["metadata"]["name"] == target.get("name", obj["metadata"]["name"])
    ]
    if not matched:
        raise KustomizeError(f"patch target {target} matches nothing")
    for obj in matched:
        for operation in operations:
            _apply(obj, operation)


def _apply(obj: Object, operation: Object) -> None:
    parts = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    op = operation["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[index]
        else:
            raise KustomizeError(f"patch op {op!r} is not supported")
        return
    if op in ("add", "replace"):
        if op == "replace" and last not in parent:
            raise KustomizeError(f"replace: {operation['path']} does not exist")
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    else:
        raise KustomizeError(f"patch op {op!r} is not supported")


def _containers(objects: list[Object]) -> list[Object]:
    found = []
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            spec = obj["spec"]["template"]["spec"]
            found += [*spec.get("initContainers", []), *spec.get("containers", [])]
    return found


def _retag(image: str, rule: Object) -> str:
    name, tag = image, ""
    if "@" in image:
        name, _, digest = image.partition("@")
        tag = "@" + digest
    elif ":" in image.rsplit("/", 1)[-1]:
        name, _, version = image.rpartition(":")
        tag = ":" + version
    if name != rule["name"]:
        return image
    if "newTag" in rule:
        tag = ":" + str(rule["newTag"])
    return rule.get("newName", name) + tag


def _hashed_name(config_map: Object) -> str:
    """The name with a suffix from a hash of the content, ten characters as Kustomize's.
    Not Kustomize's exact hash (its encoding is not worth copying here): the comparison with
    `kubectl kustomize` reads both suffixes as the same (`GENERATED_SUFFIX`)."""
    encoded = json.dumps(
        {"data": config_map["data"], "kind": "ConfigMap", "name": config_map["metadata"]["name"]},
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return f"{config_map['metadata']['name']}-{digest.translate(str.maketrans('013ae', 'ghkmt'))}"


def _with_hashed_names(obj: Object, generated: dict[str, str]) -> Object:
    obj = copy.deepcopy(obj)
    if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in generated:
        obj["metadata"]["name"] = generated[obj["metadata"]["name"]]
    if obj["kind"] in WORKLOADS:
        spec = obj["spec"]["template"]["spec"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                volume["configMap"]["name"] = generated.get(name, name)
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    name = source["configMapRef"]["name"]
                    source["configMapRef"]["name"] = generated.get(name, name)
            for variable in container.get("env", []):
                ref = (variable.get("valueFrom") or {}).get("configMapKeyRef")
                if ref is not None:
                    ref["name"] = generated.get(ref["name"], ref["name"])
    return obj
