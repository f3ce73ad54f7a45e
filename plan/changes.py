"""What a pull request changes, per stack: a digest of each part of one compiled plan. No Pulumi.

A mesh's stacks all compile the same plan (plan.shards); each registers a part of it. Comparing a part's digest at
the pull request's base and at its head says whether that stack's preview can show anything, without guessing from
paths: a one-line allow-list change in services.yaml changes one shard's part, a new namespace the platform's (its
Namespace object) and its shard's (its policy, its contract), a stack setting whatever it compiles into.

The parts (`part_digests`, by component: a namespace, the contract, a part of the plan, a setting, a matrix, so that
`changed_components` names what changed; `part_digest` is their one digest):
- single: the whole plan and every setting but the graph (the graph is in the plan through what it compiles to);
- platform: the same minus each sharded namespace's policy manifest and workload Certificates and the matrix entries
  of sharded namespaces (a shard registers those), but with the sharded namespaces' Namespace objects, Issuers and
  Vault logins, which the platform registers;
- shard: its namespaces' policy manifests and workload Certificates, its contract digest (what it needs the platform
  to have applied), its access and egress matrix entries, and the Kubernetes settings its provider is made from.
`extra` is what the stack file holds that the settings cannot show (the ciphertext of secret settings).

`part_matrices` are the matrices a stack exports, by the same split: the shards' and the platform's merge to the
single stack's (the platform keeps the entries of every namespace that is not a graph namespace of a shard, so the
verification canary's too).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from pathlib import PurePath
from typing import Any, Mapping

from plan.mesh import MeshPlan
from plan.shards import PLATFORM, SHARD, SINGLE, StackScope, contract_digests, scoped_matrix, shards_of
from read.graph import ServiceGraph
from read.settings import Secret, Settings


def _plain(value: Any) -> Any:
    """What json cannot write itself, as plain data (the C encoder walks dicts, lists and tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # JSON keys are text: a field keyed by tuples (MulticlusterPlan.exports, by namespace and name) by their repr.
        return {f.name: _text_keys(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) if not isinstance(v, (str, int, float)) else v for v in value), key=repr)
    if isinstance(value, Secret):
        return "<secret>"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    text = repr(value)  # networks and the like: values whose repr is their content
    if " at 0x" in text:
        raise TypeError(f"{type(value).__name__} has no content to compare")
    return text


def _text_keys(value: Any) -> Any:
    """A mapping whose keys json cannot write (tuples), keyed by their repr; any other value as it is."""
    if isinstance(value, Mapping) and any(k is not None and not isinstance(k, (str, int, float)) for k in value):
        return {k if k is None or isinstance(k, (str, int, float)) else repr(k): v for k, v in value.items()}
    return value


def digest(value: Any, project_dir: str | None = None) -> str:
    """sha256 of the value as canonical JSON; paths inside `project_dir` (settings keep the absolute path of the CA
    files they read) count relative to it, so two checkouts of one commit give one digest."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain, ensure_ascii=False)
    if project_dir:
        text = text.replace(json.dumps(str(project_dir).rstrip("/") + "/", ensure_ascii=False)[1:-1], "")
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sharded(graph: ServiceGraph) -> dict[str, str]:
    return {name: shard for shard, names in shards_of(graph).items() for name in names}


def _settings_but_graph(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "graph"}


def _namespace_part(plan: MeshPlan, name: str) -> dict[str, Any]:
    ns = plan.namespaces.get(name)
    if ns is None:
        return {}
    # The manifest is exactly what the namespace's policy group registers (the objects, written once).
    return {"policy": ns.policy_manifest, "certificates": ns.certificates}


def part_matrices(plan: MeshPlan, graph: ServiceGraph, scope: StackScope) -> dict[str, dict[str, Any]]:
    """The access and egress matrix entries whose objects this stack registers."""
    # What each stack exports (plan.shards.scoped_matrix): a single stack's whole matrices, a shard's namespaces,
    # a platform's everything else (the verification canary's entries included).
    return {"accessMatrix": scoped_matrix(plan.access_matrix, scope, graph),
            "egressMatrix": scoped_matrix(plan.egress_matrix, scope, graph)}


def owners(graph: ServiceGraph, policy_shards: bool) -> dict[str, str | None]:
    """Each graph namespace -> the shard whose stack registers its policy (None: the platform, or the single stack)."""
    sharded = _sharded(graph) if policy_shards else {}
    return {name: sharded.get(name) for name in graph.namespaces}


def part_digests(settings: Settings, plan: MeshPlan, scope: StackScope, extra: Any = None,
                 project_dir: str | None = None) -> dict[str, str]:
    """What the stack of `scope` registers from this plan, by component (see the module's docstring): comparing two
    such dicts says what changed (`changed_components`), their digest whether anything did (`part_digest`)."""
    graph = settings.graph
    parts: dict[str, Any] = {}
    if scope.role == SHARD:
        for name in scope.namespaces:
            parts[f"namespace {name}"] = _namespace_part(plan, name)
        parts["contract"] = contract_digests(plan, graph).get(scope.shard)
        parts["provider settings"] = settings.kubernetes
    else:
        sharded = set(_sharded(graph)) if scope.role == PLATFORM else set()
        for name, ns in plan.namespaces.items():
            fields = {f.name: getattr(ns, f.name) for f in dataclasses.fields(ns)}
            # The objects are in the manifest (and the sizes follow from it): one copy is enough to compare.
            del fields["policy"], fields["policy_sizes"]
            if name in sharded:
                del fields["policy_manifest"], fields["certificates"]
            parts[f"namespace {name}"] = fields
        for field in dataclasses.fields(plan):
            if field.name not in ("namespaces", "access_matrix", "egress_matrix"):
                parts[field.name.replace("_", " ")] = getattr(plan, field.name)
        for name, value in _settings_but_graph(settings).items():
            parts[f"setting {name}"] = value
    for name, matrix in part_matrices(plan, graph, scope).items():
        parts[name] = matrix
    parts["stack file"] = extra
    return {name: digest(value, project_dir) for name, value in parts.items()}


def part_digest(settings: Settings, plan: MeshPlan, scope: StackScope, extra: Any = None,
                project_dir: str | None = None) -> str:
    """The digest of what the stack of `scope` registers from this plan."""
    return digest(part_digests(settings, plan, scope, extra, project_dir))


def changed_components(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The components of two part_digests that differ (added and removed ones included), in the order of `after`."""
    return [name for name in [*after, *(n for n in before if n not in after)] if before.get(name) != after.get(name)]
