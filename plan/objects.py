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
# How long a Helm release (either mesh's charts) may take to become ready before `pulumi up` fails.
HELM_TIMEOUT_SECONDS = 600


def metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **(labels or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def document(obj: dict[str, Any]) -> str:
    """One object as compact JSON, keys sorted: what a group's manifest carries for it, and (its length) the size the
    API server stores, which the compile step checks against etcd's limit (collisions.oversized_objects)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def group_manifest(objects: Sequence[dict[str, Any]] = (), documents: Sequence[str] | None = None) -> str:
    """A YAML stream with one document per object, each written as JSON (JSON is YAML): `json` is fast where a YAML
    emitter is not, and the provider's decoder (NewYAMLOrJSONDecoder) reads it as the YAML stream it is. `documents`:
    the objects already written by `document` (the plan writes the graph's policy objects once, for both uses)."""
    return "".join(f"---\n{text}\n" for text in (documents if documents is not None else map(document, objects)))
