"""Validate a Kubernetes manifest (a dict, as parsed from YAML or built by the executor) against the
schema the official `kubernetes` Python client ships, without a cluster.

The client's model classes (`V1Job`, `V1Deployment`, ...) are generated from the Kubernetes OpenAPI
spec. Deserializing a manifest into its model raises on a wrong type or a missing required field;
unknown fields are silently dropped by the client, so a round trip through
`ApiClient().sanitize_for_serialization` must give back exactly the same dict: any difference is an
unknown (or misspelled, or misplaced) field. This is a structural check only: it does not know
admission rules (e.g. that a label value is at most 63 characters) — see `check_label_value` and
`check_dns1123_name` for the two we care about.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

# kind -> the API group it lives in ("" is the core group). Kinds not listed are looked up by version
# only; these are the ones our manifests and executor use, so a wrong group is caught for them.
_GROUPS = {
    "ConfigMap": "",
    "Secret": "",
    "Service": "",
    "ServiceAccount": "",
    "PersistentVolumeClaim": "",
    "Pod": "",
    "Namespace": "",
    "Deployment": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
    "Role": "rbac.authorization.k8s.io",
    "RoleBinding": "rbac.authorization.k8s.io",
    "ClusterRole": "rbac.authorization.k8s.io",
    "ClusterRoleBinding": "rbac.authorization.k8s.io",
    "Ingress": "networking.k8s.io",
    "NetworkPolicy": "networking.k8s.io",
    "PodDisruptionBudget": "policy",
    "HorizontalPodAutoscaler": "autoscaling",
}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ManifestError(ValueError):
    """The manifest does not match the Kubernetes schema."""


def model_class(api_version: str, kind: str) -> type[Any]:
    """The client's model class for `apiVersion`/`kind` (e.g. `batch/v1` + `Job` -> `V1Job`)."""
    group, _, version = api_version.rpartition("/")
    expected = _GROUPS.get(kind)
    if expected is not None and group != expected:
        want = f"{expected}/{version}" if expected else version
        raise ManifestError(f"{kind} has apiVersion {api_version!r}; expected {want!r}")
    name = version[:1].upper() + version[1:] + kind
    cls = getattr(client.models, name, None)
    if cls is None or not hasattr(cls, "from_dict"):
        raise ManifestError(f"no model {name} in the kubernetes client for {api_version} {kind}")
    return cls  # type: ignore[no-any-return]


def validate_manifest(obj: dict[str, Any]) -> None:
    """Raise `ManifestError` unless `obj` is a valid manifest of its `apiVersion`/`kind`.

    Checks: `apiVersion` and `kind` present and known; every field known at its place and of the right
    type; required fields present; `metadata.name` a DNS-1123 subdomain (or `generateName` set);
    label keys/values syntactically valid. A `kind: List` validates each of its `items`.
    """
    if not isinstance(obj, dict):
        raise ManifestError(f"a manifest is a mapping, got {type(obj).__name__}")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ManifestError("apiVersion and kind are required strings")
    if kind == "List":
        for item in obj.get("items") or []:
            validate_manifest(item)
        return
    cls = model_class(api_version, kind)
    try:
        model = cls.from_dict(obj)
    except Exception as exc:  # pydantic.ValidationError: wrong type, required field missing
        raise ManifestError(f"{kind} does not match the schema: {exc}") from exc
    round_trip = client.ApiClient().sanitize_for_serialization(model)
    difference = _first_difference(obj, round_trip, kind)
    if difference is not None:
        raise ManifestError(f"{kind}: {difference}")
    _check_metadata(kind, obj.get("metadata"))
    _check_templates(kind, obj)


def check_dns1123_name(name: str, max_length: int = 63) -> None:
    """Raise unless `name` is a DNS-1123 label (Jobs, Pods' hostnames, Services: at most 63)."""
    if len(name) > max_length or not _DNS1123_LABEL.match(name):
        raise ManifestError(f"{name!r} is not a DNS-1123 label of at most {max_length} characters")


def check_label_value(value: str) -> None:
    """Raise unless `value` is a valid label value (at most 63 characters, alphanumeric at both ends)."""
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ManifestError(f"{value!r} is not a valid label value")


def _check_labels(where: str, labels: Any) -> None:
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
            raise ManifestError(f"{where}: label key prefix {prefix!r} is not a DNS subdomain")
        if not name or len(name) > 63 or not _LABEL_VALUE.match(name):
            raise ManifestError(f"{where}: label key {key!r} is invalid")
        try:
            check_label_value(value)
        except ManifestError as exc:
            raise ManifestError(f"{where}: label {key}: {exc}") from None


def _check_metadata(kind: str, metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise ManifestError(f"{kind}: metadata is required")
    name = metadata.get("name")
    if name is None and not metadata.get("generateName"):
        raise ManifestError(f"{kind}: metadata.name is required")
    if name is not None and (len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name)):
        raise ManifestError(f"{kind}: metadata.name {name!r} is not a DNS-1123 subdomain")
    _check_labels(f"{kind} metadata.labels", metadata.get("labels"))


def _check_templates(kind: str, obj: dict[str, Any]) -> None:
    """Pod templates inside workloads: labels valid, at least one container."""
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    if template is None:
        return
    _check_labels(f"{kind} pod template labels", (template.get("metadata") or {}).get("labels"))
    containers = (template.get("spec") or {}).get("containers")
    if not containers:
        raise ManifestError(f"{kind}: the pod template needs at least one container")


def _first_difference(original: Any, round_trip: Any, path: str) -> str | None:
    """Where the round trip lost or changed something: unknown fields show up as 'missing'."""
    if isinstance(original, dict) and isinstance(round_trip, dict):
        for key, value in original.items():
            if key not in round_trip:
                if value is None:  # `key: null` in YAML means absent
                    continue
                return f"unknown field {path}.{key}"
            found = _first_difference(value, round_trip[key], f"{path}.{key}")
            if found:
                return found
        extra = set(round_trip) - set(original)
        if extra:
            return f"{path}: the schema added {sorted(extra)}"
        return None
    if isinstance(original, list) and isinstance(round_trip, list):
        if len(original) != len(round_trip):
            return f"{path}: list length changed"
        for index, (a, b) in enumerate(zip(original, round_trip, strict=True)):
            found = _first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return None
    if original != round_trip or type(original) is not type(round_trip):
        return f"{path}: {original!r} became {round_trip!r}"
    return None
