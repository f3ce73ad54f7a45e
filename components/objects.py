"""Kubernetes objects as plain dicts: the metadata and labels every object the program makes carries, the
annotations pulumi-kubernetes awaits, and a group of objects as one manifest.

Builders return plain `{apiVersion, kind, metadata, ...}` dicts so they can be checked against real schemas and
compiled without Pulumi (plan.py); k8s.py turns them into resources.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

# pulumi-kubernetes waits for these conditions before it reports the resource created (and dependents start), so a
# certificate that cannot be issued fails `pulumi up` at that resource instead of crash-looping what needs it.
WAIT_FOR_READY = {"pulumi.com/waitFor": "condition=Ready"}
WAIT_FOR_SYNCED = {"pulumi.com/waitFor": "condition=Synced"}
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "mtls-mesh"}


def metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **(labels or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def group_manifest(objects: Sequence[dict[str, Any]]) -> str:
    """A YAML stream with one document per object, each written as JSON (JSON is YAML): `json` is fast where a YAML
    emitter is not, and the provider's decoder (NewYAMLOrJSONDecoder) reads it as the YAML stream it is."""
    return "".join(f"---\n{json.dumps(obj, sort_keys=True, separators=(',', ':'))}\n" for obj in objects)
