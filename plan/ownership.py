"""Which stack holds each namespace's policy objects, and what a change of that takes; and when a stack may change
the mesh it applied (`mesh_switch_problem`, `shard_mesh_problem`: the end of this file). Plain data, no Pulumi.

A namespace's policy objects (its `authz-<ns>` ConfigGroup: Servers, AuthorizationPolicies, the default-deny and
egress-deny NetworkPolicies; its `certs-workload-<ns>` ConfigGroup: workload Certificates) are held by exactly one
stack: the single stack, the platform, or the shard its `shard:` names (plan/shards.py). Changing which one is a
*handover*, never a delete in one stack and a create in another, because the engine does those in two unordered
`up`s (docs/changing-shards.md has the source):

- the old owner's `up` deletes whatever it no longer registers, whoever else wants it (pulumi
  pkg/resource/deploy/step.go `DeleteStep.Apply`; pulumi-kubernetes provider/pkg/await/await.go `Deletion`): between
  that and the new owner's create the namespace has no default-deny NetworkPolicy, so unmeshed ports and egress are
  open, and meshed ports are denied;
- the new owner's create fails with AlreadyExists while the old owner holds the object (await.go `Creation`; not
  retried, and hidden in a preview: provider.go `Create`).

So the objects move *in state*: `pulumi state move` of the namespace's groups and their children from the old
owner's stack to the new owner's (URNs are the same in every stack: shards register the groups at their root, where
the move puts them; the platform's carry an alias to the root). Nothing on the cluster changes, and at every moment
exactly one stack manages each object.

The ledger: the platform (or single) stack exports `policyHolders`, namespace -> the stack whose state holds its
groups, for the whole environment. Two things write it: the platform's `up` (`next_holders`: it keeps every holder
and adds the namespaces new to the environment under their owner at this commit, drops those gone from the graph),
and the handover (deploy/transitions.py), which rewrites it together with the `pulumi state move`, from what each
stack's state really holds. Every stack reads it before it registers anything (a shard already reads its platform's
outputs for the contract) and refuses (`ownership_problems`), with one error naming each namespace, its holder and
the command that hands it over:
- to drop a namespace the ledger says it holds and this commit gives to another stack: its `up` would delete them;
- to register a namespace the ledger says another stack holds: its create would fail AlreadyExists half-way, and
  the holder would delete them on its next `up`.
A namespace the graph no longer has is deleted by its holder as before: it leaves the mesh. When its holder is a
shard removed in the same commit (retired, so it never applies again), the handover moves it to the platform, whose
`up` deletes it (`transition`).
With no ledger yet (an environment last deployed before it existed) the guard cannot tell who holds what:
`missing_ledger_problem` refuses every stack that might then delete or take another's namespace, and names the
handover, which writes the ledger from the states (docs/changing-shards.md, "The first deploy after this change").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from read.graph import ServiceGraph
from read.settings_format import MESHES

# The ledger a platform (or single) stack exports: namespace -> the stack whose state holds its groups.
HOLDERS_OUTPUT = "policyHolders"
# The groups of one namespace: the component names of the single stack (__main__.py) with the namespace appended
# (components.authorization.policy_group_name, components.cert_manager.workload_group_name).
GROUP_NAMES = ("authz-{namespace}", "certs-workload-{namespace}")

# What a transition is, for people (the pull request's comment, the workflow's log).
SHARD_TO_SHARD, PLATFORM_TO_SHARD, SHARD_TO_PLATFORM = "shard to shard", "platform to shard", "shard to platform"
ADDED, REMOVED, RETIRED = "added to the mesh", "removed from the mesh", "stack retired"


def shard_stack(platform: str, shard: str) -> str:
    return f"{platform}-{shard}"


def owners(graph: ServiceGraph, policy_shards: bool, platform: str) -> dict[str, str]:
    """Namespace -> the stack that registers its policy objects at this commit, for an environment whose single or
    platform stack is `platform`."""
    if not policy_shards:
        return {name: platform for name in graph.namespaces}
    sharded = {name: shard for shard, names in graph.shards.items() for name in names}
    return {name: shard_stack(platform, sharded[name]) if name in sharded else platform for name in graph.namespaces}


def group_names(namespace: str) -> tuple[str, ...]:
    return tuple(template.format(namespace=namespace) for template in GROUP_NAMES)


def holds(resource_name: str, namespace: str) -> bool:
    """Whether a resource of a stack's state is one of a namespace's groups or one of their objects (yaml/v2 names a
    group's object `<group>:<namespace>/<name>`: pulumi-kubernetes provider/pkg/provider/yaml/v2/yaml.go)."""
    return any(resource_name == group or resource_name.startswith(f"{group}:") for group in group_names(namespace))


@dataclass(frozen=True)
class Move:
    """Hand a namespace's groups from `source`'s state to `dest`'s."""
    namespace: str
    source: str
    dest: str
    kind: str


@dataclass(frozen=True)
class Retire:
    """A stack no stack file names any more: once it holds nothing, removed from the backend."""
    stack: str


@dataclass
class Transition:
    moves: list[Move] = field(default_factory=list)
    retired: list[Retire] = field(default_factory=list)
    # Namespaces only created or only deleted (new to the mesh, or gone from it): an `up` does that, no handover.
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    # Stacks a move needs that do not exist yet (a new shard): `pulumi stack init` first.
    new_stacks: list[str] = field(default_factory=list)

    @property
    def needs_handover(self) -> bool:
        return bool(self.moves or self.retired)


def kind_of(source: str, dest: str, platform: str) -> str:
    if source == platform:
        return PLATFORM_TO_SHARD
    if dest == platform:
        return SHARD_TO_PLATFORM
    return SHARD_TO_SHARD


def transition(holders: Mapping[str, str], wanted: Mapping[str, str], platform: str,
               stacks: Iterable[str] = ()) -> Transition:
    """What takes each namespace from the stack that holds it (`holders`: namespace -> stack, read from the stacks'
    states or a ledger) to the one this commit gives it (`wanted`: `owners`). `stacks`: the environment's stacks that
    exist; one this commit gives nothing (its shard removed or renamed, policyShards off) is retired once its
    namespaces are moved."""
    existing = set(stacks) | set(holders.values())
    live = set(wanted.values()) | {platform}
    result = Transition()
    for namespace, stack in sorted(holders.items()):
        target = wanted.get(namespace)
        if target is None and stack not in live:
            # Gone from the graph with its holder, which is retired and so never applies again: the platform takes
            # it and its next `up` deletes it (the guard lets a namespace gone from the graph through).
            result.moves.append(Move(namespace, stack, platform, REMOVED))
        elif target is None:
            result.removed[namespace] = stack
        elif target != stack:
            result.moves.append(Move(namespace, stack, target, kind_of(stack, target, platform)))
            if target not in existing and target not in result.new_stacks:
                result.new_stacks.append(target)
    for namespace, stack in wanted.items():
        if namespace not in holders:
            result.added[namespace] = stack
    result.retired = [Retire(stack) for stack in sorted(existing - live)]
    return result


def describe(result: Transition) -> list[str]:
    """One line per step, for the pull request's comment and the workflow's log."""
    lines = [f"namespace '{m.namespace}': {m.kind}, from stack '{m.source}' to '{m.dest}' (handover: `pulumi state "
             f"move` of {', '.join(group_names(m.namespace))} before the `up`s"
             f"{f'; then the `up` of {m.dest!r} deletes them' if m.kind == REMOVED else ''})" for m in result.moves]
    lines += [f"stack '{r.stack}' retired: its namespaces handed over, then removed from the backend "
              f"(`pulumi stack rm`), never destroyed" for r in result.retired]
    lines += [f"namespace '{ns}': {ADDED} (created by '{stack}')" for ns, stack in sorted(result.added.items())]
    lines += [f"namespace '{ns}': {REMOVED} (deleted by '{stack}')" for ns, stack in sorted(result.removed.items())]
    return lines


def next_holders(previous: Mapping[str, str] | None, graph_owners: Mapping[str, str]) -> dict[str, str]:
    """The ledger a platform's `up` exports: every namespace still in the graph keeps its holder (only a handover
    changes one), a namespace new to the environment is its owner's at this commit. None before: this commit's
    owners, the truth for the stacks that may run with none (`missing_ledger_problem`: a platform that never applied,
    a single stack that was never a sharded platform); every other stack gets its first ledger from the handover
    (deploy/transitions.py), which reads it from the stacks' states."""
    if previous is None:
        return dict(graph_owners)
    ledger = {name: holder for name, holder in previous.items() if name in graph_owners}
    for name, owner in graph_owners.items():
        ledger.setdefault(name, owner)
    return ledger


def ownership_problems(stack: str, registers: Iterable[str], graph_owners: Mapping[str, str],
                       ledger: Mapping[str, str] | None, handover: str) -> list[tuple[str, str]]:
    """Why this stack must not register what this commit gives it, as (namespace, problem) pairs; none: go ahead.

    `registers`: the namespaces whose groups it registers at this commit; `graph_owners`: every namespace's stack at
    this commit (`owners`); `ledger`: the platform's last `policyHolders` (None: never exported, nothing checked);
    `handover`: the command that hands namespaces over (named in the problem). With no ledger,
    `missing_ledger_problem` says whether the stack may run at all."""
    if ledger is None:
        return []
    registers = set(registers)
    problems = []
    for namespace, holder in sorted(ledger.items()):
        new_owner = graph_owners.get(namespace)
        if holder != stack or namespace in registers or new_owner is None or new_owner == stack:
            continue
        problems.append((namespace, (
            f"now belongs to stack '{new_owner}', and this stack still holds its policy objects: an `up` here "
            f"would delete them (its default-deny NetworkPolicies, egress deny and Certificates) before "
            f"'{new_owner}' has them, leaving namespace '{namespace}' open in between. Hand them over first: "
            f"`{handover}` (a `pulumi state move` of the groups {', '.join(group_names(namespace))} from '{stack}' "
            f"to '{new_owner}'), then `pulumi up` both stacks, in any order")))
    for namespace in sorted(registers):
        holder = ledger.get(namespace)
        if holder is None or holder == stack:
            continue
        problems.append((namespace, (
            f"now belongs to this stack, and stack '{holder}' still holds its policy objects: creating them here "
            f"fails with AlreadyExists half-way, and '{holder}' would delete them on its next `up`. Hand them over "
            f"first: `{handover}` (a `pulumi state move` of the groups {', '.join(group_names(namespace))} from "
            f"'{holder}' to '{stack}'), then `pulumi up` both stacks, in any order")))
    return problems


def missing_ledger_problem(role: str, ledger: Mapping[str, str] | None, platform: str, platform_applied: bool,
                           was_sharded: bool, handover: str) -> str | None:
    """Why this stack must not run with no ledger to check itself against (`ledger` None: its platform, or itself,
    last applied before `policyHolders` existed), or None: go ahead.

    `role`: plan/shards.py's (single, platform, shard); `platform`: the environment's single or platform stack;
    `platform_applied`: whether that stack has applied before (it has outputs); `was_sharded`: whether its last
    outputs carry `shardContracts` (it was a platform with policyShards).

    With no ledger, `ownership_problems` can check nothing, and in a sharded environment which stack's state holds
    each namespace is not known from the graph: the stacks may hold what an older commit gave them (staging, a single
    stack until this commit, holds every namespace's groups, and this commit gives some to its shards). So:
    - a shard: refused (its `up` could create what the platform still holds, and the platform's own `up` would
      delete them meanwhile);
    - a platform (policyShards on) that has applied before: refused (it would delete the groups of every namespace
      this commit gives to a shard that it still holds);
    - a platform that has never applied: nothing is held anywhere (a shard applies nothing before its platform has
      applied its contract: plan/shards.py `contract_problem`), so its first `up` writes the ledger
      (`next_holders`);
    - a single stack registers every namespace of the graph, so it deletes none another stack owns; only when its
      last outputs say it was a sharded platform (shardContracts: policyShards turned off before that platform ever
      exported a ledger) may shards still hold namespaces, whose create here would fail AlreadyExists half-way:
      refused.
    The handover writes the ledger from the states, and moves nothing when nothing moves."""
    if ledger is not None:
        return None
    if role == "shard":
        who = f"its platform stack '{platform}' has never exported"
    elif role == "platform" and platform_applied:
        who = "this platform stack has never exported"
    elif role == "single" and was_sharded:
        who = "this stack, a platform with policyShards when it last applied, has never exported"
    else:
        return None
    return (f"no ledger yet: {who} `{HOLDERS_OUTPUT}` (it last applied before the ledger existed), so which stack's "
            f"state holds each namespace's policy objects is unknown, and an `up` here could delete the policy "
            f"objects of a namespace another stack now owns, or create ones another stack still holds. Write the "
            f"ledger first: `{handover}` (it reads every stack's state of the environment, hands over what moves "
            f"and writes `{HOLDERS_OUTPUT}`; when nothing moves it moves nothing), then `pulumi up`")


def handover_command(platform: str) -> str:
    return f"python -m deploy.transitions apply --stack {platform}"


# ---- a switch of mesh -------------------------------------------------------------------------------------------------
# A change of the `mesh` setting on a stack that has applied is one `up` that deletes one control plane and its policy
# and installs the other, while every meshed pod keeps the proxy it was started with until it restarts: for a while a
# namespace holds pods of both meshes, which share no identity, so each sends the other plaintext. That is safe only
# where both meshes admit plaintext: the phases below, in both meshes (Linkerd: a Server's accessPolicy and the
# namespace default; Istio: PeerAuthentication PERMISSIVE and an ALLOW of every source, plan/istio/authorization.py
# PEER_MODES and phase_rules). docs/changing-mesh.md has the sources and the runbook.

# The stack output that says which mesh a stack (single, platform, or shard) applied.
MESH_OUTPUT = "mesh"
PLAINTEXT_PHASES = ("audit", "all-unauthenticated")
MESH_SWITCH_KEY = "allowMeshSwitch"


def applied_mesh(outputs: Mapping[str, object]) -> str | None:
    """The mesh a stack last applied, from its outputs; None: it has not applied. A stack that applied before the
    `mesh` output existed exported its control plane's versions as `linkerd` or `istio` instead."""
    mesh = outputs.get(MESH_OUTPUT)
    if isinstance(mesh, str):
        return mesh
    for name in MESHES:
        if outputs.get(name) is not None:
            return name
    return None


def mesh_switch_steps(applied: str, mesh: str, stack: str) -> str:
    """The ordered steps of a switch (docs/changing-mesh.md, the runbook), for the refusal."""
    return (f"Switch in this order: (1) keep mesh {applied}, set defaultInboundPolicy audit and drop every "
            f"inboundPolicyOverrides entry but audit and all-unauthenticated, `pulumi up` '{stack}' (and its shards), "
            f"then restart every meshed workload (kubectl rollout restart deploy -n <namespace>) so each {applied} "
            f"proxy runs under it; (2) set mesh {mesh}, `pulumi up` '{stack}', then each of its shards, then at once "
            f"restart every meshed workload: until a pod restarts it keeps its {applied} proxy, whose control plane "
            f"is gone; (3) once every meshed pod runs {mesh}'s proxy, set the phases back and `pulumi up`. To switch "
            f"anyway (no meshed workload yet, or an outage accepted), set {MESH_SWITCH_KEY} true for this one update "
            f"and back to false after it (docs/changing-mesh.md)")


def mesh_switch_problem(stack: str, applied: str | None, mesh: str, applied_phases: Mapping[str, str] | None,
                        phases: Mapping[str, str]) -> str | None:
    """Why this stack must not go from the mesh it last applied (`applied`, None: it never applied) to `mesh` in
    this `up`, or None: no switch, or one that cannot cut traffic. `applied_phases`: its last `inboundPolicies`
    output (namespace -> phase; None: it exported none, so the phases its pods run under are not known); `phases`:
    this commit's. The refusal's fix is `mesh_switch_steps`."""
    if applied is None or applied == mesh:
        return None
    if applied_phases is None:
        return (f"is {mesh}, and this stack last applied {applied} without exporting the phases it applied "
                f"(inboundPolicies), so whether its pods admit plaintext is not known: this `up` would delete "
                f"{applied}'s control plane and policy while every meshed pod keeps its {applied} proxy")
    before = {ns: phase for ns, phase in sorted(applied_phases.items()) if phase not in PLAINTEXT_PHASES}
    after = {ns: phase for ns, phase in sorted(phases.items()) if phase not in PLAINTEXT_PHASES}
    if not before and not after:
        return None
    reasons = []
    if before:
        reasons.append(f"the {applied} proxies run under phases that refuse the plaintext of restarted {mesh} pods "
                       f"({', '.join(f'{ns}: {phase}' for ns, phase in before.items())}, as last applied)")
    if after:
        reasons.append(f"this update puts namespaces in phases whose {mesh} policy refuses the plaintext of pods not "
                       f"yet restarted ({', '.join(f'{ns}: {phase}' for ns, phase in after.items())})")
    return (f"is {mesh}, and this stack last applied {applied}: this `up` deletes {applied}'s control plane and "
            f"policy and installs {mesh}'s, while every meshed pod keeps its {applied} proxy until it restarts, and "
            f"pods of the two meshes share no identity; {'; and '.join(reasons)}, so calls between restarted and "
            f"not yet restarted pods would be cut")


def shard_mesh_problem(platform_stack: str, mesh: str, platform_mesh: str | None) -> str | None:
    """Why a shard must not apply objects of `mesh` (its settings: the platform's stack file at this commit) on a
    platform that last applied `platform_mesh` (None: not applied, which the contract check reports), or None."""
    if platform_mesh is None or platform_mesh == mesh:
        return None
    return (f"this shard's objects are {mesh}'s, and its platform stack '{platform_stack}' last applied {platform_mesh}: "
            f"a platform and its shards switch mesh together, the platform first. If this commit is the newer one, "
            f"run `pulumi up` of '{platform_stack}' at this commit first (its own check decides whether the switch may "
            f"run: docs/changing-mesh.md), then this shard (Operator: wait until the platform's Stack is Ready at this "
            f"commit); if the platform has applied a newer commit, run this shard at that commit")
