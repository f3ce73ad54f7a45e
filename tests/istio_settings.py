"""Stack settings for the Istio tests: a stack file's settings, with changes, as the program would load them
(plan/istio/ takes the shared Settings; `mesh: istio` is not a setting yet)."""

from __future__ import annotations

from typing import Any

from harness import PROJECT, stack_config, wire_value
from read import stack_files
from read.settings import Settings

# Not the defaults: a check that passed with the charts' own defaults (cluster.local, Kubernetes) would prove nothing.
TRUST_DOMAIN = "mesh.example.org"
CLUSTER = "east-1"
ROTATION = {"trustAnchor": "2026-11", "nextTrustAnchor": "2027-11", "anchorRotationPhase": "add-next"}


def settings_of(stack: str, **changes: Any) -> Settings:
    config, secret_keys = stack_config(stack)
    config = {**config, **{f"{PROJECT}:{key}": wire_value(value) for key, value in changes.items()}}
    return stack_files.load_stack_settings(config, stack, secret_keys=frozenset(secret_keys))
