"""Between one stack and a platform stack with policy shards, both ways, by moving state, never re-creating an object.

    venv/bin/python -m deploy.migrate_to_shards --stack prod                 # one stack -> platform + shards
    venv/bin/python -m deploy.migrate_to_shards --stack prod --to single     # platform + shards -> one stack
    venv/bin/python -m deploy.migrate_to_shards --stack prod --org acme      # Pulumi Cloud: acme/mtls-mesh/<stack>
    venv/bin/python -m deploy.migrate_to_shards --stack prod --urns          # each group's URNs, both namings

runs the migration with the Pulumi CLI (logged in to the backend, from the project directory) and edits stacks/ in
the working copy: to shards, `pulumi stack init` of each shard stack (and its stack file), `pulumi state move` of
exactly each shard's ConfigGroups and every child of theirs, then `policyShards: true`, then the ledger, then the
previews that prove nothing is re-created; back to one stack, policyShards off and the shard files gone first, then
each group's state returned under the single stack's names (`pulumi stack export`/`import`), then the emptied shard
stacks removed, then the ledger. The ledger (the platform's `policyHolders`, deploy/transitions.py) is written from
the states, so no stack refuses its `up` afterwards.
`Migration` says why that order lets a deploy run between any two steps, and how it resumes after a failure: every
step reads the states first and does only what is not done. The URNs come from the plan (read/ + plan/, as the
program compiles it) and plan/shards.py's scope of each shard. docs/migrating-shards.md is the runbook.

How the engine names what moves (pulumi `sdk/go/common/resource/urn/urn.go`, `New`:
`urn:pulumi:<stack>::<project>::<parent's qualified type>$<type>::<name>`, the parent's type left out when it is the
root stack; `pkg/resource/deploy/deployment.go` `generateURN` passes the parent's qualified type):
- `authz-<ns>`, a `kubernetes:yaml/v2:ConfigGroup` under the component `mtls-mesh:authorization:MeshAuthorization`
  `authz`, and `certs-workload-<ns>` under `mtls-mesh:cert_manager:CertManager` `certs` (Vault stacks);
- each object of a group, a resource of its own that pulumi-kubernetes registers with the group as parent
  (`provider/pkg/provider/yaml/v2/yaml.go` `Register`): type `kubernetes:<group>/<version>:<Kind>` (`core` for the
  core group), name `<group name>:<namespace>/<name>`, so its qualified type carries
  `...$kubernetes:yaml/v2:ConfigGroup$<type>`.
tests/harness.py builds the same URNs from what the program registers; tests/test_migrate_to_shards.py checks that
every URN here is one of them and that no other resource moves.

What `pulumi state move` does with them (`pkg/cmd/pulumi/state/state_move.go`, pulumi 1b5949891b3c, v3.259):
- it moves the URNs given and each one's *direct* children (lines 278-287, `graph.ChildrenOf`), so every child is
  passed explicitly as well, and a group always in the same command as its children: a resource whose parent is not
  moved in the same command is re-parented to the destination's root stack (lines 405-414);
- `--include-parents` (lines 263-276) would add `authz` and `certs` themselves, and the children pass would then take
  their every child: every namespace's groups, the Issuers, the cert-manager and trust-manager releases. It is never
  used here;
- providers are copied, not moved (lines 311-393): the destination gets `pulumi:providers:kubernetes::kubernetes`,
  which the shard program registers under the same name at its root;
- dependencies across the cut (the groups' `dependsOn` on the Namespace, the Issuer, the Linkerd CRD release, which
  stay in the platform) are dropped and printed as warnings (lines 430-454, `breakDependencies`): expected here;
- the URNs are rewritten by `rewriteURNs` (lines 641-701): `moved_urn` below.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import yaml

from plan.mesh import MeshPlan
from plan.shards import shards_of, stack_scope
from read.graph import ServiceGraph

PROJECT = "mtls-mesh"
PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFIX = "urn:pulumi:"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
AUTHZ_COMPONENT = ("mtls-mesh:authorization:MeshAuthorization", "authz")
CERTS_COMPONENT = ("mtls-mesh:cert_manager:CertManager", "certs")
# The newest fix `pulumi state move` needs (CHANGELOG 3.226.0: integrity errors when copied providers depend on
# resources left in the source; 3.224.0: re-parenting).
MIN_CLI = "3.226.0"


# --- URNs, as pulumi builds and reads them (sdk/go/common/resource/urn/urn.go) ------------------------------------

def new_urn(stack: str, project: str, parent_type: str, type_: str, name: str) -> str:
    """urn.go `New`: the parent's qualified type joined with `$`, left out for no parent or the root stack."""
    qualified = type_ if parent_type in ("", ROOT_STACK_TYPE) else f"{parent_type}${type_}"
    return f"{PREFIX}{stack}::{project}::{qualified}::{name}"


def _parts(urn: str) -> tuple[str, str, str, str]:
    """stack, project, qualified type, name (urn.go `Stack`, `Project`, `QualifiedType`, `Name`: the name is everything
    after the third `::`)."""
    if not urn.startswith(PREFIX) or urn.count("::") < 3:
        raise ValueError(f"not a URN: {urn!r}")
    stack, project, qualified, name = urn[len(PREFIX):].split("::", 3)
    return stack, project, qualified, name


def urn_stack(urn: str) -> str:
    return _parts(urn)[0]


def qualified_type(urn: str) -> str:
    return _parts(urn)[2]


def urn_type(urn: str) -> str:
    """urn.go `Type`: the last `$`-separated part of the qualified type."""
    return qualified_type(urn).rpartition("$")[2]


def urn_project(urn: str) -> str:
    return _parts(urn)[1]


def urn_name(urn: str) -> str:
    return _parts(urn)[3]


def parent_type(urn: str) -> str:
    """The parent's qualified type as the URN records it ("" at the stack's root)."""
    return qualified_type(urn).rpartition("$")[0]


def config_group_parent(urn: str, candidates: Iterable[str]) -> str | None:
    """The parent of a yaml/v2 ConfigGroup's child among `candidates`: the group whose qualified type is the child's
    parent type and whose name is the child's name up to the first ':' (the provider's `<prefix>:` naming, yaml.go
    `Register`; the prefix defaults to the group's name). None when no candidate is."""
    wanted_type, prefix = parent_type(urn), urn_name(urn).partition(":")[0]
    if not wanted_type:
        return None
    for candidate in candidates:
        if qualified_type(candidate) == wanted_type and urn_name(candidate) == prefix:
            return candidate
    return None


def moved_urn(urn: str, dest_stack: str, moved: set[str] | frozenset[str],
              parent_of: Mapping[str, str] | None = None, project: str | None = None) -> str:
    """The URN `pulumi state move` gives `urn` in `dest_stack` when the resources `moved` (source URNs) move in the
    same command (state_move.go `Run` lines 405-421 and `rewriteURNs` lines 641-701):
    - the stack (and project) are renamed (`renameStackAndProject`, lines 630-639);
    - a resource whose parent is not moved is re-parented to the destination's root stack (lines 408-414), so its
      URN loses every parent type: `urn:pulumi:<dest>::<project>::<type>::<name>`;
    - a resource whose parent is moved keeps that parent, under the parent's *new* URN (the rewrite map, lines 421
      and 664-678), and its URN is rebuilt from the new parent's qualified type (lines 690-695), so the chain above
      the highest moved ancestor is dropped: `...::kubernetes:yaml/v2:ConfigGroup$<type>::<name>`.
    `parent_of` maps a source URN to its parent's (the state's `parent`); without it the parent is found among
    `moved` by the ConfigGroup naming (`config_group_parent`), which is how every resource this project moves is named.
    """
    _, source_project, _, name = _parts(urn)
    if parent_of is not None:
        parent = parent_of.get(urn) or None
        parent = parent if parent in moved else None
    else:
        parent = config_group_parent(urn, moved)
    new_parent_type = "" if parent is None else qualified_type(moved_urn(parent, dest_stack, moved, parent_of, project))
    return new_urn(dest_stack, project or source_project, new_parent_type, urn_type(urn), name)


def simulate_state_move(resources: Sequence[tuple[str, str]], args: Iterable[str], dest_stack: str,
                        include_parents: bool = False) -> dict[str, str]:
    """What `pulumi state move --source <s> --dest <dest_stack> [--include-parents] <args>` moves, as {source URN:
    destination URN}, in the source snapshot's order. `resources`: the source state's (urn, parent) pairs in order,
    providers and the root stack left out (providers are copied, never moved: lines 238-240, 281-283).
    The set follows lines 235-291: the URNs given, with --include-parents every ancestor (`ParentsOf`; the root
    stack and providers excepted), then each one's direct children (`ChildrenOf`). Go may or may not visit entries
    added to the map it ranges over, so only direct children of what was named before that pass count here, as
    the only thing the CLI guarantees."""
    parent_of = dict(resources)
    args = set(args)
    chosen = [urn for urn, _ in resources if urn in args]
    selected = set(chosen)
    if include_parents:
        for urn in chosen:
            parent = parent_of.get(urn)
            while parent in parent_of:
                selected.add(parent)
                parent = parent_of.get(parent)
    named = set(selected)
    selected |= {urn for urn, parent in resources if parent in named}
    return {urn: moved_urn(urn, dest_stack, selected, parent_of) for urn, _ in resources if urn in selected}


# --- What moves: from the plan -----------------------------------------------------------------------------------

def child_type(obj: Mapping[str, Any]) -> str:
    """`kubernetes:<group>/<version>:<Kind>`, `core` for the core group (the provider's resource type tokens)."""
    api_group, _, version = obj["apiVersion"].rpartition("/")
    return f"kubernetes:{api_group or 'core'}/{version}:{obj['kind']}"


def child_name(group: str, obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{group}:{meta['namespace']}/{meta['name']}" if meta.get("namespace") else f"{group}:{meta['name']}"


@dataclass(frozen=True)
class MovedGroup:
    """One ConfigGroup of a shard's namespace and its children, as the single stack holds them."""

    namespace: str
    name: str
    urn: str
    children: tuple[str, ...]

    @property
    def urns(self) -> tuple[str, ...]:
        return (self.urn, *self.children)


def _group(stack: str, component: tuple[str, str], namespace: str, name: str,
           objects: Sequence[Mapping[str, Any]]) -> MovedGroup:
    component_urn = new_urn(stack, PROJECT, ROOT_STACK_TYPE, *component)
    group_urn = new_urn(stack, PROJECT, qualified_type(component_urn), CONFIG_GROUP, name)
    children = tuple(new_urn(stack, PROJECT, qualified_type(group_urn), child_type(obj), child_name(name, obj))
                     for obj in objects)
    return MovedGroup(namespace, name, group_urn, children)


def namespace_groups(plan: MeshPlan, namespace: str) -> list[MovedGroup]:
    """The groups the single stack registers for one namespace, as __main__.py and the components register them:
    `authz-<ns>` when it has policy objects (components/authorization.py), `certs-workload-<ns>` when it has
    certificate services and a workload Issuer (Vault; components/cert_manager.py)."""
    ns = plan.namespaces[namespace]
    groups = []
    if ns.policy:
        groups.append(_group(plan.stack, AUTHZ_COMPONENT, namespace, f"authz-{namespace}", ns.policy))
    if namespace in plan.certificate_namespaces() and ns.issuer is not None:
        groups.append(_group(plan.stack, CERTS_COMPONENT, namespace, f"certs-workload-{namespace}", ns.certificates))
    return groups


def shard_moves(plan: MeshPlan, graph: ServiceGraph) -> dict[str, list[MovedGroup]]:
    """Per shard of the graph (in graph order), the groups that move from the single stack to `<stack>-<shard>`:
    those of the namespaces plan/shards.py scopes to that shard."""
    return {shard: [group for namespace in stack_scope(graph, True, shard).namespaces
                    for group in namespace_groups(plan, namespace)]
            for shard in shards_of(graph)}


def shard_stack(stack: str, shard: str) -> str:
    return f"{stack}-{shard}"


def shard_urn(group: MovedGroup, urn: str, dest: str) -> str:
    """Where `urn` (one of the group's, as the single stack names it) is in the shard stack `dest`: what `pulumi state
    move` of the whole group leaves there, which is what the shard program registers (components/shard.py)."""
    return moved_urn(urn, dest, frozenset(group.urns))


# --- The states: what is where -----------------------------------------------------------------------------------

class Backend(Protocol):
    """The state backend as the migration uses it. `PulumiCli` runs the Pulumi CLI; tests use JSON files."""

    def exists(self, stack: str) -> bool: ...
    def resources(self, stack: str) -> list[dict[str, Any]]: ...
    def init(self, stack: str, secrets_provider: str | None) -> None: ...
    def move(self, source: str, dest: str, urns: Sequence[str]) -> None: ...
    def delete(self, stack: str, urns: Sequence[str]) -> None: ...
    def replace_resources(self, stack: str, resources: list[dict[str, Any]]) -> None: ...
    def remove(self, stack: str) -> None: ...
    def preview(self, stack: str) -> dict[str, int]: ...


class StepFailed(SystemExit):
    """A step could not be done; everything before it is, and running the command again resumes here."""


def _urns(resources: Iterable[Mapping[str, Any]]) -> set[str]:
    return {r["urn"] for r in resources}


def children_in(resources: Iterable[Mapping[str, Any]], parent: str) -> list[str]:
    """The URNs of `parent`'s children in a state, in its order: what the state holds of a group, whatever the plan
    of this commit names (a child the plan no longer has is still the group's, and moves with it)."""
    return [r["urn"] for r in resources if r.get("parent") == parent]


# --- The repository: what the next deploy runs -------------------------------------------------------------------

POLICY_SHARDS_LINE = f"  {PROJECT}:policyShards: true\n"


def shard_file_text(environment: str, shard: str) -> str:
    return ("# yaml-language-server: $schema=../schema/stack-settings.schema.json\n"
            "# $schema: ../schema/stack-settings.schema.json\n"
            f"# The {shard} shard of {environment}: the policy objects and workload Certificates of the namespaces the "
            f"service graph gives\n# `shard: {shard}`. Every other setting is {environment}'s "
            f"(stacks/Pulumi.{environment}.yaml): only these two live here.\n"
            f"config:\n  {PROJECT}:platformStack: {environment}\n  {PROJECT}:shard: {shard}\n")


def set_policy_shards(path: Path, on: bool) -> bool:
    """Write (or remove) `policyShards: true` in a stack file, keeping every other line. True when it changed."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.strip().startswith(f"{PROJECT}:policyShards:")]
    if on:
        kept = [*kept, *([] if not kept or kept[-1].endswith("\n") else ["\n"]), POLICY_SHARDS_LINE]
    if kept == lines:
        return False
    path.write_text("".join(kept), encoding="utf-8")
    return True


def repository_is_sharded(environment: str, project_dir: Path) -> bool:
    config = (yaml.safe_load((project_dir / "stacks" / f"Pulumi.{environment}.yaml").read_text()) or {}).get(
        "config") or {}
    return config.get(f"{PROJECT}:policyShards") is True


# --- The steps ---------------------------------------------------------------------------------------------------

@dataclass
class Migration:
    """One environment's move between a single stack and a platform with shards, in either direction.

    The rule every step keeps, so that a deploy may run between any two of them (and the repository may be committed
    at any step): **no stack's state holds a group its committed program does not register.** A deploy deletes only
    what its stack's state holds and its program no longer registers (pulumi-kubernetes `Deletion`), so keeping the
    rule means no deploy in between deletes anything. What a deploy in between may do is try to create a group whose
    state is in the other stack; the object exists, so the provider's Create fails with AlreadyExists (pulumi-kubernetes
    provider/pkg/await/await.go `Creation`; never retried, never adopted without upsertExistingObjects): that deploy
    fails, changes nothing in the cluster, and leaves at most the group's empty ConfigGroup component in its state,
    which the next run of this command removes.

    - to shards: the state moves first (the single stack still registers the groups, now without their state: a deploy
      fails as above), then the repository says policyShards and gets the shard stack files (from then on the platform
      registers none of the groups and each shard registers exactly what moved).
    - to one stack: the repository changes first (policyShards off, shard files removed: the single stack registers
      the groups again, a deploy fails as above until they are back; no shard stack runs any more), then the state
      comes back, then the emptied shard stacks are removed.

    Every step looks at the states before it acts and skips what is done, so after a failure the same command resumes.
    """

    environment: str
    plan: MeshPlan
    graph: ServiceGraph
    backend: Backend
    project_dir: Path
    secrets_provider: str | None = None
    log: Callable[[str], None] = print

    @property
    def moves(self) -> dict[str, list[MovedGroup]]:
        return shard_moves(self.plan, self.graph)

    def _say(self, text: str) -> None:
        self.log(text)

    # to shards ---------------------------------------------------------------------------------------------------

    def to_shards(self) -> None:
        env = self.environment
        if not self.backend.exists(env):
            raise StepFailed(f"{env}: no such stack in the backend: nothing to split")
        for shard, groups in self.moves.items():
            dest = shard_stack(env, shard)
            if not self.backend.exists(dest):
                self._say(f"init {dest}")
                self.backend.init(dest, self.secrets_provider)
            self._ensure_shard_file(shard)
            for group in groups:
                self._move_to_shard(group, dest)
        self._write_sharded_repository()
        # What a deploy at the old commit recorded meanwhile (a group's component, its objects' creates having
        # failed) goes from the platform's state: it holds no object, and the platform no longer registers it.
        for shard, groups in self.moves.items():
            for group in groups:
                self._move_to_shard(group, shard_stack(self.environment, shard))
        self._write_ledger(sharded=True)
        self._check_previews(to_shards=True)

    def _move_to_shard(self, group: MovedGroup, dest: str) -> None:
        env = self.environment
        env_resources, shard_resources = self.backend.resources(env), self.backend.resources(dest)
        in_env = group.urn in _urns(env_resources)
        in_shard = shard_urn(group, group.urn, dest) in _urns(shard_resources)
        if in_shard:
            if in_env:
                # A copy left behind: a move whose source was not saved, or a deploy that re-registered the group
                # while its state was in the shard (its creates failed: the group's component alone). The shard
                # holds the group, so the environment's copy goes, children before their group.
                leftovers = [*children_in(env_resources, group.urn), group.urn]
                self._say(f"{group.name}: already in {dest}; removing the {len(leftovers)} copies left in {env}")
                self.backend.delete(env, leftovers)
            return
        if not in_env:
            self._say(f"{group.name}: in no state yet (never applied): the shard creates it")
            return
        urns = [group.urn, *children_in(env_resources, group.urn)]
        self._say(f"move {group.name} ({len(urns)} resources) {env} -> {dest}")
        self.backend.move(env, dest, urns)

    def _ensure_shard_file(self, shard: str) -> None:
        """The shard's stack file with its two settings, kept whole from its `pulumi stack init` on (which may write
        the file with only the stack's `encryptionsalt`). Committed before the platform says policyShards, the shard
        refuses to run (read/stack_files.py: its platform registers its namespaces itself): it deletes nothing."""
        path = self.project_dir / "stacks" / f"Pulumi.{shard_stack(self.environment, shard)}.yaml"
        if not path.exists():
            path.write_text(shard_file_text(self.environment, shard), encoding="utf-8")
            self._say(f"wrote {path.relative_to(self.project_dir)}")
            return
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        config = document.get("config") or {}
        wanted = {f"{PROJECT}:platformStack": self.environment, f"{PROJECT}:shard": shard}
        if all(config.get(k) == v for k, v in wanted.items()):
            return
        text = path.read_text(encoding="utf-8")
        kept = [line for line in text.splitlines() if line.strip() != "config:" and
                not any(line.strip().startswith(f"{k}:") for k in wanted)]
        head = shard_file_text(self.environment, shard)
        path.write_text("\n".join([*kept, ""]) + head if kept else head, encoding="utf-8")
        self._say(f"completed {path.relative_to(self.project_dir)} (platformStack, shard)")

    def _write_sharded_repository(self) -> None:
        stacks_dir = self.project_dir / "stacks"
        for shard in self.moves:
            self._ensure_shard_file(shard)
        if set_policy_shards(stacks_dir / f"Pulumi.{self.environment}.yaml", True):
            self._say(f"set policyShards: true in stacks/Pulumi.{self.environment}.yaml")

    # to one stack ------------------------------------------------------------------------------------------------

    def to_single(self) -> None:
        env = self.environment
        if not self.backend.exists(env):
            raise StepFailed(f"{env}: no such stack in the backend")
        self._write_single_repository()
        for shard, groups in self.moves.items():
            dest = shard_stack(env, shard)
            if not self.backend.exists(dest):
                continue  # removed once emptied: done before
            for group in groups:
                self._move_to_environment(group, dest)
            self._remove_emptied(dest)
        self._write_ledger(sharded=False)
        self._check_previews(to_shards=False)

    def _write_single_repository(self) -> None:
        stacks_dir = self.project_dir / "stacks"
        if set_policy_shards(stacks_dir / f"Pulumi.{self.environment}.yaml", False):
            self._say(f"removed policyShards from stacks/Pulumi.{self.environment}.yaml")
        for shard in self.moves:
            path = stacks_dir / f"Pulumi.{shard_stack(self.environment, shard)}.yaml"
            if path.exists():
                path.unlink()
                self._say(f"removed {path.relative_to(self.project_dir)}")

    def _move_to_environment(self, group: MovedGroup, dest: str) -> None:
        env = self.environment
        env_resources, shard_resources = self.backend.resources(env), self.backend.resources(dest)
        in_shard = shard_urn(group, group.urn, dest)
        if in_shard not in _urns(shard_resources):
            return  # back already, or never applied (the one stack creates it)
        shard_children = children_in(shard_resources, in_shard)
        env_children = children_in(env_resources, group.urn)
        if group.urn not in _urns(env_resources) or len(env_children) < len(shard_children):
            # Not back yet, or only what a deploy in between left (the group's component; its objects' creates
            # failed): that goes, and the shard's copy comes back under the one stack's names.
            stale = {group.urn, *env_children}
            kept = [r for r in env_resources if r["urn"] not in stale]
            self._say(f"move {group.name} ({1 + len(shard_children)} resources) {dest} -> {env}")
            self.backend.replace_resources(env, returned_resources(group, dest, env, kept, shard_resources))
        # The environment holds the whole group now: the shard's copy goes.
        self._say(f"{group.name}: back in {env}; removing it from {dest}")
        gone = {in_shard, *shard_children}
        self.backend.replace_resources(dest, [r for r in self.backend.resources(dest) if r["urn"] not in gone])

    def _remove_emptied(self, dest: str) -> None:
        left = [r for r in self.backend.resources(dest) if not _bookkeeping(r)]
        if left:
            raise StepFailed(f"{dest} still holds {len(left)} resources that are not this migration's "
                             f"(e.g. {left[0]['urn']}): it is not removed")
        self._say(f"remove the emptied stack {dest}")
        self.backend.remove(dest)

    # both --------------------------------------------------------------------------------------------------------

    def _write_ledger(self, sharded: bool) -> None:
        """The platform's (or single stack's) `policyHolders` rewritten from what the states now hold, by the
        handover's own reader and writer (deploy/transitions.py `holdings`, `write_ledger`): without it every stack
        checks itself against the ledger from before the moves (or none) and refuses its `up` (plan/ownership.py
        `ownership_problems`, `missing_ledger_problem`). Last, once every group is where the committed stack files
        say: the ledger then says what a deploy at that commit finds, and re-writing it on a resumed run is a no-op."""
        from deploy import transitions
        from plan.ownership import owners

        env = self.environment
        stacks = [env, *(shard_stack(env, shard) for shard in self.moves)]
        files = stacks if sharded else [env]
        view = _TransitionsView(self.backend, stacks)
        environment = transitions.Environment(env, owners(self.graph, sharded, env), files)
        holders, _ = transitions.holdings(view, environment)
        self._say(f"write the ledger of {env} ({transitions.HOLDERS_OUTPUT}) from the states")
        transitions.write_ledger(view, environment, holders)

    def _check_previews(self, to_shards: bool) -> None:
        """The proof that nothing is re-created: each shard's preview changes nothing; the environment's creates,
        deletes and replaces nothing (it updates the sharded Namespaces' mtls-mesh.io/policy-shard annotation and its
        shardContracts output)."""
        env = self.environment
        if to_shards:
            for shard in self.moves:
                ops = self.backend.preview(shard_stack(env, shard))
                changed = {op: n for op, n in ops.items() if op != "same" and n}
                if changed:
                    raise StepFailed(f"pulumi preview --stack {shard_stack(env, shard)} --expect-no-changes: {changed}")
        ops = self.backend.preview(env)
        bad = {op: n for op, n in ops.items() if op in ("create", "delete", "replace", "create-replacement",
                                                        "delete-replaced") and n}
        if bad:
            raise StepFailed(f"pulumi preview --stack {env}: {bad}; only in-place updates were expected")
        self._say("previews: nothing created, deleted or replaced. Commit stacks/ and merge: the deploy applies "
                  f"{env}" + (", then its shards" if to_shards else ""))


class _TransitionsView:
    """This migration's backend as deploy/transitions.py reads and writes one (its `Backend`'s stacks, export,
    import_), limited to the environment's stacks."""

    def __init__(self, backend: Backend, stacks: Sequence[str]):
        self.backend, self.names = backend, list(stacks)

    def stacks(self) -> list[str]:
        return [stack for stack in self.names if self.backend.exists(stack)]

    def export(self, stack: str) -> dict[str, Any]:
        return {"deployment": {"resources": self.backend.resources(stack)}}

    def import_(self, stack: str, deployment: Mapping[str, Any]) -> None:
        self.backend.replace_resources(stack, list(deployment["deployment"]["resources"]))


def _bookkeeping(resource: Mapping[str, Any]) -> bool:
    """What a shard stack holds besides its groups: its root, its providers, its StackReference reads."""
    return resource["type"] in (ROOT_STACK_TYPE, "pulumi:pulumi:StackReference") or \
        resource["type"].startswith("pulumi:providers:")


def returned_resources(group: MovedGroup, dest: str, env: str, env_resources: list[dict[str, Any]],
                       shard_resources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The environment's resources with the group back under the single stack's names (`pulumi state move` cannot do
    this: what it moves lands at the destination's root, lines 405-414, and the single stack registers its groups
    under the components `authz` and `certs`). The group and each child the shard's state holds keep their id,
    inputs and outputs; their URN, parent and provider become the environment's (a child's URN is its group's
    qualified type with its own type and name, urn.go `New`); dependencies on what is not in the environment go (as a
    move drops them, lines 430-454). Appended at the end: their parents and provider come earlier, as a state's
    order requires."""
    group_in_shard = shard_urn(group, group.urn, dest)
    renamed = {group_in_shard: group.urn}
    for child in children_in(shard_resources, group_in_shard):
        renamed[child] = new_urn(env, urn_project(group.urn), qualified_type(group.urn), urn_type(child),
                                 urn_name(child))
    kubernetes = [r for r in env_resources if r["type"] == "pulumi:providers:kubernetes"]
    component = parent_type(group.urn)
    component_urn = next((r["urn"] for r in env_resources if qualified_type(r["urn"]) == component), None)
    if component_urn is None or len(kubernetes) != 1:
        raise StepFailed(f"{env}: its state has no {component} component or not one Kubernetes provider to return "
                         f"{group.name} under; run `pulumi up` of {env} first")
    provider = f"{kubernetes[0]['urn']}::{kubernetes[0].get('id', '')}"
    known = {r["urn"] for r in env_resources} | set(renamed.values())
    returned = []
    for resource in shard_resources:
        urn = renamed.get(resource["urn"])
        if urn is None:
            continue
        copy = json.loads(json.dumps(resource))
        copy["urn"] = urn
        copy["parent"] = component_urn if urn == group.urn else group.urn
        if copy.get("provider"):
            copy["provider"] = provider
        copy["dependencies"] = [renamed[d] for d in copy.get("dependencies") or [] if renamed.get(d) in known]
        copy["propertyDependencies"] = {k: [renamed[d] for d in v if renamed.get(d) in known]
                                        for k, v in (copy.get("propertyDependencies") or {}).items()}
        returned.append(copy)
    return [*env_resources, *returned]


# --- The Pulumi CLI ----------------------------------------------------------------------------------------------

def _qualified(stack: str, org: str | None) -> str:
    return f"{org}/{PROJECT}/{stack}" if org else stack


def init_command(dest: str, org: str | None, secrets_provider: str | None) -> list[str]:
    """`pulumi stack init` with the platform's secrets provider: every stack of an environment is decrypted with the
    same key, which the CI secrets and the Operator's envRefs already hold (docs/delivery.md, 'State backend and credentials').
    The passphrase provider needs the SAME PULUMI_CONFIG_PASSPHRASE exported; a cloud KMS URL is the platform's
    `secretsprovider`; Pulumi Cloud uses the organization's key."""
    command = ["pulumi", "stack", "init", _qualified(dest, org), "--no-select"]
    if secrets_provider:
        command += ["--secrets-provider", secrets_provider]
    return command


def move_command(source: str, dest: str, urns: Sequence[str], org: str | None) -> list[str]:
    return ["pulumi", "state", "move", "--source", _qualified(source, org), "--dest", _qualified(dest, org), "--yes",
            *urns]


class PulumiCli:
    """The backend through the Pulumi CLI (>= MIN_CLI), run from the project directory with the backend's login."""

    def __init__(self, project_dir: Path, org: str | None = None):
        self.project_dir, self.org = project_dir, org

    def _run(self, command: list[str], stdin: str | None = None) -> str:
        print("$ " + " ".join(shlex.quote(c) for c in command), file=sys.stderr)
        done = subprocess.run(command, cwd=self.project_dir, input=stdin, capture_output=True, text=True)
        if done.returncode != 0:
            raise StepFailed(f"{' '.join(command[:4])} failed:\n{done.stderr.strip()}\nFix that and run this "
                             "command again: it resumes where it stopped")
        return done.stdout

    def exists(self, stack: str) -> bool:
        listed = json.loads(self._run(["pulumi", "stack", "ls", "--json"]) or "[]")
        names = {entry.get("name", "").rpartition("/")[2] for entry in listed}
        return stack in names

    def _export(self, stack: str) -> dict[str, Any]:
        return json.loads(self._run(["pulumi", "stack", "export", "--stack", _qualified(stack, self.org)]))

    def resources(self, stack: str) -> list[dict[str, Any]]:
        return list((self._export(stack).get("deployment") or {}).get("resources") or [])

    def init(self, stack: str, secrets_provider: str | None) -> None:
        self._run(init_command(stack, self.org, secrets_provider))

    def move(self, source: str, dest: str, urns: Sequence[str]) -> None:
        self._run(move_command(source, dest, urns, self.org))

    def delete(self, stack: str, urns: Sequence[str]) -> None:
        for urn in urns:  # children first (the caller's order): a parent with children is refused
            self._run(["pulumi", "state", "delete", "--stack", _qualified(stack, self.org), "--yes", urn])

    def replace_resources(self, stack: str, resources: list[dict[str, Any]]) -> None:
        exported = self._export(stack)
        exported["deployment"]["resources"] = resources
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(exported, handle)
        try:
            self._run(["pulumi", "stack", "import", "--stack", _qualified(stack, self.org), "--file", handle.name])
        finally:
            Path(handle.name).unlink()

    def remove(self, stack: str) -> None:
        # --force: what is left is the stack's root, providers and reads (checked by the caller), no object.
        self._run(["pulumi", "stack", "rm", _qualified(stack, self.org), "--force", "--yes"])

    def preview(self, stack: str) -> dict[str, int]:
        report = json.loads(self._run(["pulumi", "preview", "--stack", _qualified(stack, self.org), "--json"]))
        return dict((report.get("changeSummary") or {}))


class MigrationError(SystemExit):
    """A refusal meant for the person running the migration."""


def load(stack: str, project_dir: Path = PROJECT_DIR,
         config: Mapping[str, str] | None = None) -> tuple[MeshPlan, ServiceGraph, str | None]:
    """The plan and graph of a stack file (or of `config`), as the program compiles them, and the stack file's
    `secretsprovider` (None: Pulumi Cloud's key or unknown; "passphrase"). Refuses a shard stack and a graph without
    shards."""
    from plan.mesh import compile_mesh
    from read.errors import SettingsError
    from read.settings import load_settings
    from read.stack_files import read_stack_file, stack_file_document, with_defaults

    path = project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    secrets_provider = None
    if config is None:
        if not path.exists():
            raise MigrationError(f"{stack}: no stack file {path}")
        try:
            config, secret_keys = read_stack_file(path, project_dir=project_dir)
            document = stack_file_document(path)
        except SettingsError as err:
            raise MigrationError(str(err)) from None
        # What `pulumi stack init` wrote: `secretsprovider` (+ `encryptedkey`) for a cloud KMS, `encryptionsalt` for
        # the passphrase provider, neither for Pulumi Cloud's own key.
        secrets_provider = document.get("secretsprovider") or ("passphrase" if "encryptionsalt" in document else None)
    else:
        config, secret_keys = with_defaults(config, project_dir), frozenset()
    # Every stack holds both keys (the CLI fills in their default, ""): a shard stack is one that names them.
    if config.get(f"{PROJECT}:shard") or config.get(f"{PROJECT}:platformStack"):
        raise MigrationError(f"{stack} is a shard stack (it sets shard/platformStack): name the environment's stack")
    try:
        settings = load_settings(config, stack, secret_keys=secret_keys, project_dir=project_dir)
        plan = compile_mesh(settings)
    except SettingsError as err:
        raise MigrationError(str(err)) from None
    if not shards_of(settings.graph):
        raise MigrationError(f"{stack}: no namespace of its graph has a `shard:`, so there is nothing to move. Give "
                             "the namespaces each shard registers `shard: <name>` in the graph (docs/shards.md), then run this again")
    return plan, settings.graph, secrets_provider


def main(argv: Sequence[str] | None = None, project_dir: Path = PROJECT_DIR, backend: Backend | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.migrate_to_shards", description=__doc__.split("\n\n")[1])
    parser.add_argument("--stack", required=True, help="the environment's stack (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--to", choices=("shards", "single"), default="shards",
                        help="shards: split it into a platform and shard stacks; single: fold the shards back")
    parser.add_argument("--org", help="Pulumi Cloud organization (stacks named <org>/mtls-mesh/<stack>)")
    parser.add_argument("--urns", action="store_true", help="print each group's URNs, single and sharded, and stop")
    args = parser.parse_args(argv)
    plan, graph, secrets_provider = load(args.stack, project_dir)
    if args.urns:
        for shard, groups in shard_moves(plan, graph).items():
            for group in groups:
                for urn in group.urns:
                    print(f"{urn}\t{shard_urn(group, urn, shard_stack(args.stack, shard))}")
        return 0
    migration = Migration(args.stack, plan, graph, backend or PulumiCli(project_dir, args.org), project_dir,
                          secrets_provider)
    migration.to_shards() if args.to == "shards" else migration.to_single()
    return 0


if __name__ == "__main__":
    sys.exit(main())
