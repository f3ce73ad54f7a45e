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

import time
from typing import Any, Callable, Iterable, Mapping

import pulumi
from pulumi.runtime.sync_await import _sync_await

from plan.ownership import (HOLDERS_OUTPUT, MESH_SWITCH_KEY, applied_mesh, mesh_switch_problem, mesh_switch_steps,
                            missing_ledger_problem, ownership_problems, shard_mesh_problem)
from plan.shards import contract_problem
from read.errors import Problem, SettingsError

CONTRACTS_OUTPUT = "shardContracts"
# How long an Operator-delivered shard's `up` waits for its platform to apply what it needs, and how often it looks.
# The Operator starts a shard's update whenever its platform succeeded within the prerequisite's 5 minutes, at
# whichever commit (it compares none: deploy/operator_shards.py PREREQUISITE_SUCCEEDED_WITHIN), so after two
# promotions less than 5 minutes apart the shard starts while its platform has not applied the second. Refusing
# would count a failure, and three in a row stall the Stack until someone annotates it (pulumi-kubernetes-operator
# v2.9.0 stack_controller.go: `markStackFailed` counts, `maxUpdateFailures = 3`, `cooldown` 30 s then 90 s): a
# waiting update counts nothing. 15 minutes covers the platform's branch poll (120 s) and an update of it with
# refresh; a platform that takes longer, or fails, still fails the shard, which is then a real problem to look at.
WAIT_FOR_PLATFORM_SECONDS = 15 * 60
POLL_SECONDS = 15


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
                    ledger: Mapping[str, str] | None, handover: str, preview: bool, *, role: str, platform: str,
                    platform_applied: bool, was_sharded: bool) -> None:
    """Refuse an update that would drop a namespace another stack now owns, or create one another stack still
    holds (plan/ownership.py), or that has no ledger to tell (`missing_ledger_problem`: a sharded environment whose
    platform last applied before the ledger existed); in a preview (a pull request's, whose handover the deploy
    workflow does before its `up`s) say the same as a warning and show the plan."""
    missing = missing_ledger_problem(role, ledger, platform, platform_applied, was_sharded, handover)
    where = "mtls-mesh:platformStack" if role == "shard" else "mtls-mesh:policyShards"
    problems = [(where, missing)] if missing else [
        (f"namespaces.{namespace}", problem)
        for namespace, problem in ownership_problems(stack, registers, graph_owners, ledger, handover)]
    if not problems:
        return
    if preview:
        for _, problem in problems:
            pulumi.log.warn(f"{problem}. `pulumi up` of this stack will refuse until then.")
        return
    raise SettingsError([Problem(key, problem, "") for key, problem in problems], stack)


def current_outputs(platform_stack: str) -> Mapping[str, Any]:
    """The platform's outputs as the backend holds them now. The builtin invoke `pulumi:pulumi:readStackOutputs`
    reads the referenced stack's outputs from the backend on every call (pulumi pkg/resource/deploy/builtins.go
    `Invoke` -> `readStackReference` -> `GetStackOutputs`), and, unlike a StackReference, registers nothing, so it can
    be asked again while waiting."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{platform_stack}"
    result = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": name})
    return dict((result.value or {}).get("outputs") or {})


def current_contracts(platform_stack: str) -> Mapping[str, str] | None:
    """The platform's `shardContracts` output as the backend holds it now (current_outputs)."""
    return applied_contracts(current_outputs(platform_stack))


def wait_for_platform(shard: str, platform_stack: str, wanted: str, applied: Mapping[str, str] | None, *,
                      read: Callable[[str], Mapping[str, str] | None] = current_contracts,
                      sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
                      limit: float = WAIT_FOR_PLATFORM_SECONDS, every: float = POLL_SECONDS,
                      say: Callable[[str], Any] = pulumi.log.info) -> str | None:
    """Until the platform has applied this shard's contract, or `limit` seconds: the problem left (None: go on)."""
    problem = contract_problem(shard, platform_stack, wanted, applied)
    start = clock()
    while problem is not None and clock() - start < limit:
        say(f"waiting for the platform stack '{platform_stack}' ({int(clock() - start)} s of {int(limit)}): {problem}")
        sleep(every)
        problem = contract_problem(shard, platform_stack, wanted, read(platform_stack))
    return problem


def _platform_problem(shard: str, platform_stack: str, wanted: str, mesh: str | None,
                      outputs: Mapping[str, Any]) -> str | None:
    """The contract's problem, said as a switch of mesh when the platform applied another mesh (the digest differs
    then too: MeshPlan.control_plane_contract names the mesh)."""
    problem = contract_problem(shard, platform_stack, wanted, applied_contracts(outputs))
    if problem is None or mesh is None:
        return problem
    return shard_mesh_problem(platform_stack, mesh, applied_mesh(outputs)) or problem


def check_platform_applied(shard: str, platform_stack: str, wanted: str, stack: str, preview: bool,
                           outputs: Mapping[str, Any], wait: bool = False,
                           mesh: str | None = None) -> Mapping[str, Any]:
    """Refuse an update whose plan the platform has not applied; in a preview (a pull request's, typically, whose
    platform part is not merged yet) say the same as a warning and show the plan. `outputs`: the platform's, as read
    once before anything registers (read_outputs: with its `mesh`). `wait` (an Operator-delivered shard): first wait
    for the platform to apply it (wait_for_platform), so a routine promotion needs no one. `mesh`: the shard's (its
    platform's settings at this commit), named in the refusal when the platform applied another. Returns the
    platform's outputs to check the rest against: `outputs`, or after a wait those the platform has since exported
    (its ledger with them)."""
    applied = applied_contracts(outputs)
    problem = _platform_problem(shard, platform_stack, wanted, mesh, outputs)
    if problem is None:
        return outputs
    if preview:
        pulumi.log.warn(f"{problem}. `pulumi up` of this shard will refuse until then.")
        return outputs
    if wait:
        problem = wait_for_platform(shard, platform_stack, wanted, applied)
        if problem is None:
            return current_outputs(platform_stack)
        problem = _platform_problem(shard, platform_stack, wanted, mesh, current_outputs(platform_stack)) or problem
        problem += (f" (waited {WAIT_FOR_PLATFORM_SECONDS // 60} minutes; once the platform's Stack is Ready at this "
                    f"commit: kubectl -n pulumi-operator annotate stack mtls-mesh-{stack} "
                    "pulumi.com/reconciliation-request=$(date +%s) --overwrite)")
    raise SettingsError([Problem(f"mtls-mesh:platformStack", problem, "")], stack)


def applied_once_ready(digests: Mapping[str, str], ready: Iterable[pulumi.Resource]) -> pulumi.Output:
    """The platform's shardContracts, known only once what they promise is created: its Namespaces, Issuers and the
    Linkerd CRD release. The SDK registers the stack's outputs when every exported value resolves (pulumi SDK
    `runtime/stack.py`: `register_outputs` serialises them first), and the engine records them at once, before the
    update ends; a plain value would tell a waiting shard that the platform applied its contract while the platform
    is still creating it. A resource that fails never resolves, so a failed update leaves the last contracts."""
    ids = [r.id if isinstance(r, pulumi.CustomResource) else r.urn for r in ready]
    return pulumi.Output.all(*ids).apply(lambda _: dict(digests))


def check_mesh_switch(stack: str, previous: Mapping[str, Any], mesh: str, phases: Mapping[str, str], preview: bool,
                      allowed: bool) -> None:
    """Refuse an `up` that changes the stack's mesh while its pods, or this commit's policy, refuse plaintext
    (plan/ownership.py `mesh_switch_problem`); in a preview warn and show the plan, as the ownership guard does.
    `previous`: the stack's own last outputs (its `mesh`, `inboundPolicies`). `allowed` (allowMeshSwitch): the person
    accepts the cut for this one update; said, never silent."""
    applied = applied_mesh(previous)
    phases_applied = previous.get("inboundPolicies")
    problem = mesh_switch_problem(stack, applied, mesh,
                                  dict(phases_applied) if isinstance(phases_applied, Mapping) else None, phases)
    if allowed:
        if problem:
            pulumi.log.warn(f"mtls-mesh:mesh {problem}: switching anyway, as "
                            f"{MESH_SWITCH_KEY} is true. Restart every meshed workload now, then set {MESH_SWITCH_KEY} "
                            "back to false")
        elif applied == mesh:
            pulumi.log.warn(f"{MESH_SWITCH_KEY} is true, and this update switches no mesh: set it back to false, so "
                            "a later change of mesh is checked")
        return
    if problem is None:
        return
    steps = mesh_switch_steps(str(applied), mesh, stack)
    if preview:
        pulumi.log.warn(f"mtls-mesh:mesh {problem}. `pulumi up` of this stack will refuse. {steps}")
        return
    raise SettingsError([Problem("mtls-mesh:mesh", problem, steps)], stack)
