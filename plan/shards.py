"""Policy shards: which stack registers what, and what a shard needs the platform to have applied. No Pulumi.

A mesh runs as one stack (`single`), or as a platform stack (`platform`, the setting policyShards) and one stack per
shard (`shard`). Every stack compiles the same plan from the same settings and graph (plan.mesh.compile_mesh); the
scope only says which of its parts the stack registers:

- a namespace with a `shard` in the graph has its policy objects and workload Certificates registered by that shard's
  stack; everything else (every Namespace, rollout phases, the trust chain, Vault logins, issuers, the mesh's control
  plane, alerts, verification, and the policy of namespaces without a shard) by the platform stack;
- in a single stack, or a platform stack whose graph names no shard, everything is registered by that stack.

Edges between shards need nothing between shards: a call from A to B is authorized by B's own objects (the Server's
AuthorizationPolicy in B's namespace names A's identity), and both sides read the one graph. Until B's shard has
applied, B's namespace has no authorization for A and its default (deny) refuses A: a shard applied early or late
denies, never allows.

The contract: a shard's objects are right only on the platform they were compiled against (its namespaces exist
with the rollout phase the policy assumes, the issuers its Certificates name, the mesh whose CRDs they use, the
trust domain its identities carry; the mesh, named in the contract, and plan/ownership.py `shard_mesh_problem`
when the platform applied another). `shard_contracts` states that, per shard, as a digest; the platform exports the
digests it applied, and a shard refuses to apply a plan whose digest the platform has not (`contract_problem`). A
commit that changes only a team's allow-lists changes no contract, so it never waits for the platform.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plan.mesh import MeshPlan, NamespacePlan
from read.graph import ServiceGraph

SINGLE, PLATFORM, SHARD = "single", "platform", "shard"

# Past this many objects in one stack's namespace groups, the program advises sharding. Each object is an engine
# resource of its own (pulumi-kubernetes yaml/v2 registers one per ConfigGroup child), so a stack's preview, `up` and
# state grow with this count, not with what the program registers: at 10,000 a first `up` is about 3.3 minutes at
# the Kubernetes client's 50 requests/s alone, and the state about 28 MB (docs/shards.md, 'When to shard').
ADVISED_OBJECTS_PER_STACK = 10_000


@dataclass(frozen=True)
class StackScope:
    """Which part of the plan one stack registers. `namespaces`: the graph namespaces whose policy objects and workload
    Certificates it registers (the platform registers every Namespace object whatever this says)."""

    role: str
    shard: str | None
    namespaces: tuple[str, ...]

    @property
    def registers_platform(self) -> bool:
        return self.role != SHARD


def shards_of(graph: ServiceGraph) -> dict[str, tuple[str, ...]]:
    """Each shard the graph names -> its namespaces, in graph order (shards in order of first appearance)."""
    return dict(graph.shards)


def stack_scope(graph: ServiceGraph, policy_shards: bool, shard: str | None = None) -> StackScope:
    """The scope of a stack: a shard's (`shard` set), a platform's (`policy_shards`), or a single stack's."""
    if shard is not None:
        return StackScope(SHARD, shard, shards_of(graph).get(shard, ()))
    if not policy_shards:
        return StackScope(SINGLE, None, tuple(graph.namespaces))
    sharded = {name for names in shards_of(graph).values() for name in names}
    return StackScope(PLATFORM, None, tuple(name for name in graph.namespaces if name not in sharded))


def scoped_namespaces(plan: MeshPlan, scope: StackScope) -> dict[str, NamespacePlan]:
    """The namespace plans whose policy and workload Certificates this stack registers, in graph order."""
    return {name: plan.namespaces[name] for name in scope.namespaces if name in plan.namespaces}


def _grouped(ns: NamespacePlan) -> int:
    return len(ns.policy) + len(ns.certificates)


def grouped_objects(namespaces: Mapping[str, NamespacePlan]) -> int:
    """The objects in these namespaces' ConfigGroups (policy and workload Certificates): the engine resources they add."""
    return sum(_grouped(ns) for ns in namespaces.values())


def size_advice(namespaces: Mapping[str, NamespacePlan], scope: StackScope, limit: int | None = None) -> str | None:
    """A warning for a stack whose namespace groups hold more than `limit` objects (default ADVISED_OBJECTS_PER_STACK;
    None: within it). Advice only: a large stack works, it is slow to preview and apply, and one lock serialises every
    team's change."""
    limit = ADVISED_OBJECTS_PER_STACK if limit is None else limit
    count = grouped_objects(namespaces)
    if count <= limit:
        return None
    largest = sorted(namespaces.items(), key=lambda item: -_grouped(item[1]))[:3]
    biggest = ", ".join(f"{name} ({_grouped(ns):,})" for name, ns in largest)
    what = (f"this stack manages {count:,} Kubernetes objects in {len(namespaces):,} namespaces' ConfigGroups "
            f"(largest: {biggest}), each an engine resource with its own Check, Diff and Create: more than the "
            f"{limit:,} advised for one stack")
    how = {SINGLE: "split the mesh into a platform stack (mtls-mesh:policyShards: true) and policy shards: give "
                   "namespaces a `shard:` in the service graph",
           PLATFORM: "give more of the platform's own namespaces a `shard:` in the service graph",
           SHARD: f"split shard '{scope.shard}': move some of its namespaces to a new `shard:` in the service graph"}
    return f"{what}. To keep previews and `up` fast, {how[scope.role]} (docs/shards.md)"


def scoped_matrix(matrix: Mapping[str, Any], scope: StackScope, graph: ServiceGraph) -> dict[str, Any]:
    """The entries of an access or egress matrix (keys `<namespace>/...`) that this stack's own objects decide: a
    shard's namespaces; for a platform everything but the shards' (the verification canary's entries included), so
    the platform's and the shards' matrices, merged, are the single stack's."""
    if scope.role == SHARD:
        namespaces = set(scope.namespaces)
        return {key: value for key, value in matrix.items() if key.partition("/")[0] in namespaces}
    elsewhere = set(graph.namespaces) - set(scope.namespaces)
    return {key: value for key, value in matrix.items() if key.partition("/")[0] not in elsewhere}


def shard_contracts(plan: MeshPlan, graph: ServiceGraph) -> dict[str, dict[str, Any]]:
    """Per shard, what its objects assume of the platform: each of its namespaces (meshed, its rollout phase, the
    Issuer its Certificates name) and what every shard's objects assume (the mesh's chart and so its policy CRDs,
    the trust domain the identities carry, whether issuers are Vault's or the program's:
    MeshPlan.control_plane_contract). Plain JSON."""
    common = {**plan.control_plane_contract(), "issuers": "vault" if plan.vault is not None else "self-signed"}
    contracts = {}
    for shard, names in shards_of(graph).items():
        namespaces = {}
        for name in names:
            ns = plan.namespaces[name]
            namespaces[name] = {"meshed": graph.namespaces[name].meshed,
                                "phase": plan.inbound_policies.get(name),
                                "issuer": ns.issuer["metadata"]["name"] if ns.issuer is not None else None}
        contracts[shard] = {**common, "namespaces": namespaces}
    return contracts


def contract_digest(contract: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(contract, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def contract_digests(plan: MeshPlan, graph: ServiceGraph) -> dict[str, str]:
    """What the platform exports (`shardContracts`) and each shard compares with its own."""
    return {shard: contract_digest(contract) for shard, contract in shard_contracts(plan, graph).items()}


def contract_problem(shard: str, platform_stack: str, wanted: str, applied: Mapping[str, str] | None) -> str | None:
    """Why this shard must not apply yet (None: the platform has applied what it needs)."""
    if applied is None:
        return (f"the platform stack '{platform_stack}' exports no shardContracts: it has not been updated with "
                f"policyShards: true yet. Run `pulumi up` of '{platform_stack}' first (Operator: wait until its Stack "
                "is Ready), then this shard")
    have = applied.get(shard)
    if have == wanted:
        return None
    if have is None:
        return (f"the platform stack '{platform_stack}' has not applied shard '{shard}' (its namespaces, phases and "
                f"issuers): run `pulumi up` of '{platform_stack}' at this commit first (Operator: wait until its "
                "Stack is Ready at this commit), then this shard")
    return (f"the platform stack '{platform_stack}' applied shard '{shard}' as {have[:19]}, and this commit needs "
            f"{wanted[:19]}: its namespaces, rollout phases, issuers or mesh (which one, its chart version) changed and "
            f"the platform has not applied that yet. Run `pulumi up` of '{platform_stack}' at this commit first (Operator: wait until "
            "its Stack is Ready at this commit), then this shard")


def names_in(scopes: Iterable[StackScope]) -> list[str]:
    """Every namespace the scopes register, in order (a namespace in two scopes appears twice: a test's check)."""
    return [name for scope in scopes for name in scope.namespaces]
