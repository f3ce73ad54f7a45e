"""What a stack reads of its own and its platform's last outputs before it registers anything, through a
StackReference: the shard contracts the platform last applied (its `shardContracts` output), the trust rotation the
stack last applied, and the ledger of which stack holds each namespace's policy objects (the platform's
`policyHolders`, plan/ownership.py); and the refusal when this commit would take or drop a namespace that is not
handed over.

A StackReference is a read, and the engine runs reads in previews too (pulumi pkg/resource/deploy/step.go, ReadStep:
"Read steps run during previews"), so a pull request's preview compares with what the platform really applied. The
engine reads the referenced stack's whole checkpoint for it (pkg/backend/diy/state.go getCheckpoint; httpstate
exportDeployment), once per run: one more reason the platform stays small.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pulumi
from pulumi.runtime.sync_await import _sync_await

from plan.ownership import HOLDERS_OUTPUT, ownership_problems
from plan.shards import contract_problem
from read.errors import Problem, SettingsError

CONTRACTS_OUTPUT = "shardContracts"


def read_outputs(stack: str, names: Iterable[str]) -> dict[str, Any]:
    """Outputs of a stack as it last applied them (None for one it has not), through one StackReference (a second
    one of the same stack would be a second resource of the same name). Read synchronously, as the SDK's own
    synchronous invoke does (pulumi/runtime/invoke.py), so a refusal comes before any registration."""
    reference = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}")
    found = {}
    for name in names:
        details = _sync_await(reference.get_output_details(name))
        found[name] = details.value if details.value is not None else details.secret_value
    return found


def applied_contracts(outputs: Mapping[str, Any]) -> Mapping[str, str] | None:
    """The platform's `shardContracts` output, or None when it has none (never updated with policyShards)."""
    value = outputs.get(CONTRACTS_OUTPUT)
    return dict(value) if isinstance(value, Mapping) else None


def holders(outputs: Mapping[str, Any]) -> dict[str, str] | None:
    """The ledger (namespace -> the stack holding its policy objects) in a platform's or single stack's outputs;
    None from a stack that has never exported one."""
    value = outputs.get(HOLDERS_OUTPUT)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else None


def check_ownership(stack: str, registers: Iterable[str], graph_owners: Mapping[str, str],
                    ledger: Mapping[str, str] | None, handover: str, preview: bool) -> None:
    """Refuse an update that would drop a namespace another stack now owns, or create one another stack still
    holds (plan/ownership.py); in a preview (a pull request's, whose handover the deploy workflow does before its
    `up`s) say the same as a warning and show the plan."""
    problems = ownership_problems(stack, registers, graph_owners, ledger, handover)
    if not problems:
        return
    if preview:
        for _, problem in problems:
            pulumi.log.warn(f"{problem}. `pulumi up` of this stack will refuse until then.")
        return
    raise SettingsError([Problem(f"namespaces.{namespace}", problem, "") for namespace, problem in problems], stack)


def check_platform_applied(shard: str, platform_stack: str, wanted: str, stack: str, preview: bool,
                           outputs: Mapping[str, Any]) -> None:
    """Refuse an update whose plan the platform has not applied; in a preview (a pull request's, typically, whose
    platform part is not merged yet) say the same as a warning and show the plan."""
    problem = contract_problem(shard, platform_stack, wanted, applied_contracts(outputs))
    if problem is None:
        return
    if preview:
        pulumi.log.warn(f"{problem}. `pulumi up` of this shard will refuse until then.")
        return
    raise SettingsError([Problem(f"mtls-mesh:platformStack", problem, "")], stack)
