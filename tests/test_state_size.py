"""benchmarks/state_size.py's estimate of a stack's state stores each Kubernetes object as pulumi-kubernetes
checkpoints it (provider.go `checkpointObject`): the engine's inputs, the live object, and the live object's
`__inputs`; the README's state sizes are built from these entries."""

from __future__ import annotations

import json

from benchmarks.state_size import checkpoint_entry

SERVER_FIELDS = {"uid", "resourceVersion", "generation", "creationTimestamp"}


def test_a_config_group_child_stores_its_object_three_times(prod):
    child = next(r for r in prod.registrations if r.group is not None)
    obj = child.object()
    entry = checkpoint_entry(child, 7, "provider-id")
    outputs = dict(entry["outputs"])
    assert entry["inputs"] == obj and outputs.pop("__inputs") == obj
    assert outputs.pop("__initialApiVersion") == obj["apiVersion"] and outputs.pop("__fieldManager")
    live_meta = outputs.pop("metadata")
    assert set(live_meta) - set(obj["metadata"]) == SERVER_FIELDS
    assert {**outputs, "metadata": {k: v for k, v in live_meta.items() if k not in SERVER_FIELDS}} == obj
    assert entry["parent"] == child.group.urn and entry["provider"].endswith("::provider-id")
    assert len(json.dumps(entry)) > 3 * len(json.dumps(obj))


def test_other_resources_store_their_inputs_twice_and_components_only_their_place(prod):
    release = next(r for r in prod.registrations if r.type == "kubernetes:helm.sh/v3:Release")
    entry = checkpoint_entry(release, 0, "provider-id")
    assert entry["inputs"] == entry["outputs"] and "__inputs" not in entry["outputs"]
    component = next(r for r in prod.registrations if not r.custom)
    assert "inputs" not in checkpoint_entry(component, 0, "provider-id")
