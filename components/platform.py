"""What a shard stack reads of its platform stack before it registers anything: the shard contracts the platform
last applied (its `shardContracts` output), through a StackReference.

A StackReference is a read, and the engine runs reads in previews too (pulumi pkg/resource/deploy/step.go, ReadStep:
"Read steps run during previews"), so a pull request's preview compares with what the platform really applied. The
engine reads the referenced stack's whole checkpoint for it (pkg/backend/diy/state.go getCheckpoint; httpstate
exportDeployment), once per run: one more reason the platform stays small.
"""

from __future__ import annotations

from typing import Mapping

import pulumi
from pulumi.runtime.sync_await import _sync_await

from plan.shards import contract_problem
from read.errors import Problem, SettingsError

CONTRACTS_OUTPUT = "shardContracts"


def applied_contracts(platform_stack: str) -> Mapping[str, str] | None:
    """The platform's `shardContracts` output, or None when it has none (never updated with policyShards).
    Read synchronously, as rotation.read_previous_rotation does, so a refusal comes before any registration."""
    reference = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{platform_stack}")
    details = _sync_await(reference.get_output_details(CONTRACTS_OUTPUT))
    value = details.value if details.value is not None else details.secret_value
    return dict(value) if isinstance(value, Mapping) else None


def check_platform_applied(shard: str, platform_stack: str, wanted: str, stack: str, preview: bool) -> None:
    """Refuse an update whose plan the platform has not applied; in a preview (a pull request's, typically, whose
    platform part is not merged yet) say the same as a warning and show the plan."""
    problem = contract_problem(shard, platform_stack, wanted, applied_contracts(platform_stack))
    if problem is None:
        return
    if preview:
        pulumi.log.warn(f"{problem}. `pulumi up` of this shard will refuse until then.")
        return
    raise SettingsError([Problem(f"mtls-mesh:platformStack", problem, "")], stack)
