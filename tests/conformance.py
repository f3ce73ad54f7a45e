"""Checks Kubernetes objects against reality: upstream CRD schemas for custom resources, kubernetes-validate for core kinds.

Structural CRD schemas never forbid unknown fields (the API server silently prunes them), so besides jsonschema
validation this walks each object against its schema and reports every key the schema does not know.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

from harness import SHARED_DIR, YAML_LOADER

UPSTREAM = SHARED_DIR / "upstream"
# The oldest Kubernetes the Linkerd charts support (kubeVersion >=1.31.0-0): objects must be valid there.
KUBERNETES_VERSION = "1.31.0"
CORE_GROUPS = ("", "apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io", "policy", "coordination.k8s.io",
               "admissionregistration.k8s.io")


def shared_missing_reason() -> str | None:
    if not UPSTREAM.is_dir():
        return f"upstream CRD schemas not found at {UPSTREAM} (the shared/ folder beside the repository)"
    return None


@lru_cache(maxsize=1)
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version of every upstream CRD."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    # The CRD folders only: upstream/charts holds chart sources whose templates are not YAML until rendered.
    for path in sorted(p for p in UPSTREAM.rglob("*.yaml") if "charts" not in p.relative_to(UPSTREAM).parts[:1]):
        for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=YAML_LOADER):
            if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    api_version = f"{spec['group']}/{version['name']}"
                    schemas[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema: int-or-string and nullable become real type unions."""
    if isinstance(node, list):
        return [_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}] + out.get("anyOf", [])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("format", None)
    return out


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of keys the schema does not declare (where it would silently drop them)."""
    if isinstance(obj, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for key, value in obj.items():
                    yield from unknown_fields(value, extra, f"{path}.{key}")
            return
        properties = dict(schema.get("properties", {}))
        for branch in schema.get("allOf", []) + schema.get("anyOf", []) + schema.get("oneOf", []):
            properties.update(branch.get("properties", {}))
        for key, value in obj.items():
            if path == "" and key in ("apiVersion", "kind", "metadata"):
                continue  # implicit on every object; metadata is checked as a strict ObjectMeta instead
            if key not in properties:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, properties[key], f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")


def validate_custom_resource(obj: dict[str, Any]) -> list[str]:
    key = (obj.get("apiVersion"), obj.get("kind"))
    schema = crd_schemas().get(key)
    if schema is None:
        return [f"no served upstream CRD for {key[0]} {key[1]}"]
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in jsonschema.Draft7Validator(_to_jsonschema(schema)).iter_errors(obj)]
    errors += [f"{p}: field not in the {key[1]} schema (the API server would silently drop it)" for p in unknown_fields(obj, schema)]
    errors += validate_core(_metadata_probe(obj))
    return errors


def _metadata_probe(obj: dict[str, Any]) -> dict[str, Any]:
    """A ConfigMap carrying the object's metadata, so kubernetes-validate checks it as a strict ObjectMeta."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": copy.deepcopy(obj.get("metadata", {}))}


def validate_core(obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.path)) or '<root>'}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"no Kubernetes {KUBERNETES_VERSION} schema: {err}"]
    return []


def is_core(obj: dict[str, Any]) -> bool:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return group in CORE_GROUPS


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Every problem with one object, as it would reach the cluster."""
    return validate_core(obj) if is_core(obj) else validate_custom_resource(obj)


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def chart_values_file(name: str) -> Path:
    return UPSTREAM / "linkerd" / "charts" / name


def chart_values(*names: str) -> dict[str, Any]:
    """A chart's values as Helm would see them with the given files layered (later files win)."""
    merged: dict[str, Any] = {}
    for name in names:
        merged = _layer(merged, yaml.safe_load(chart_values_file(name).read_text(encoding="utf-8")) or {})
    return merged


def commented_chart_values(name: str) -> dict[str, Any]:
    """Top-level keys a values file documents only as a comment (`# enableTlsRoutes: false`): the templates read them
    with `hasKey`, so they are real settings although the parsed file lacks them."""
    documented = {}
    for match in re.finditer(r"^# ([A-Za-z][A-Za-z0-9]*): (.+)$", chart_values_file(name).read_text(encoding="utf-8"),
                             re.MULTILINE):
        documented[match.group(1)] = yaml.safe_load(match.group(2))
    return documented


def _layer(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _layer(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def unknown_chart_values(ours: Any, chart: Any, path: str = "") -> Iterator[str]:
    """Every value we set that the chart does not have, or whose type differs from the chart's default.

    A chart default of `{}` is a free-form map (podAnnotations and the like) and a default of null accepts anything;
    everywhere else a key the chart does not declare is one its templates never read.
    """
    if isinstance(ours, dict):
        if chart is None or chart == {}:
            return
        if not isinstance(chart, dict):
            yield f"{path}: the chart's value is a {type(chart).__name__}, not a map"
            return
        for key, value in ours.items():
            if key not in chart:
                yield f"{path}.{key}: not a value of the chart"
            else:
                yield from unknown_chart_values(value, chart[key], f"{path}.{key}")
    elif chart is not None and not isinstance(chart, (dict, list)):
        # Helm values from YAML: ints, bools and strings must keep their kind, or templates compare them wrongly.
        if type(ours) is not type(chart) and not (isinstance(chart, str) and chart == "" and ours is not None
                                                  and isinstance(ours, (str, int))):
            yield f"{path}: {ours!r} is a {type(ours).__name__}, the chart's default {chart!r} is a {type(chart).__name__}"
    elif isinstance(chart, dict) and chart:
        yield f"{path}: the chart expects a map here, not {ours!r}"
