"""From one stack to a platform stack and policy shards, by moving state, never re-creating an object.

    venv/bin/python -m deploy.migrate_to_shards --stack prod                # DIY backend (passphrase or cloud KMS)
    venv/bin/python -m deploy.migrate_to_shards --stack prod --org acme     # Pulumi Cloud: org/mtls-mesh/<stack>

prints the commands that split the single stack `<stack>` along the graph's `shard:` fields: per shard, `pulumi stack
init <stack>-<shard>`, `pulumi state move` of exactly that shard's ConfigGroups and every one of their children, and a
`pulumi preview --expect-no-changes` of the shard; then `policyShards: true` on `<stack>` (it becomes the platform)
and its own `pulumi preview --expect-no-changes`. It runs nothing and imports no Pulumi: the URNs come from the plan
(read/ + plan/, as the program compiles it) and plan/shards.py's scope of each shard.

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
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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


# --- The commands ------------------------------------------------------------------------------------------------

def _qualified(stack: str, org: str | None) -> str:
    return f"{org}/{PROJECT}/{stack}" if org else stack


def _stack_init(stack: str, dest: str, org: str | None, secrets_provider: str | None) -> list[str]:
    """`pulumi stack init` with the platform's secrets provider: every stack of an environment is decrypted with the
    same key, which the CI secrets and the Operator's envRefs already hold (README "State backend and credentials")."""
    name = _qualified(dest, org)
    if secrets_provider and secrets_provider != "passphrase":
        return [f"# the secrets provider of {stack} (its stack file's `secretsprovider`); this writes its own",
                "# `encryptedkey` into the new stack file (the key itself stays in the KMS)",
                f"pulumi stack init {name} --secrets-provider {shlex.quote(secrets_provider)}"]
    if org and not secrets_provider:
        return ["# Pulumi Cloud encrypts with the organization's key: nothing to choose",
                f"pulumi stack init {name}"]
    return ["# the passphrase provider with the SAME passphrase as the platform (PULUMI_CONFIG_PASSPHRASE exported);",
            "# this writes the stack's own `encryptionsalt` into the new stack file",
            f"pulumi stack init {name} --secrets-provider passphrase"]


def migration_script(plan: MeshPlan, graph: ServiceGraph, org: str | None = None,
                     secrets_provider: str | None = None) -> str:
    """The commands, as a shell script, that turn the single stack `plan.stack` into its platform and shards."""
    stack = plan.stack
    moves = shard_moves(plan, graph)
    source = _qualified(stack, org)
    lines = [
        f"# Split the single stack '{stack}' into the platform stack '{stack}' and {len(moves)} shard stack(s),",
        "# moving state only: no object in the cluster is created, changed or deleted.",
        f"# Generated by `python -m deploy.migrate_to_shards --stack {stack}"
        + (f" --org {org}" if org else "") + "` from the graph and stacks/ of this commit.",
        f"# Pulumi CLI >= {MIN_CLI}, logged in to the backend that holds '{stack}', run from the project directory.",
        f"# Until the last preview below passes, nothing may run `pulumi up` of '{stack}' (workflows or Operator): as a",
        "# single stack it would create the moved resources again; with policyShards it would delete their objects",
        "# had they not moved.",
        "set -euo pipefail",
        "",
        f"# 0. The state matches this commit, and a copy of it to go back to (`pulumi stack import --stack {source}`).",
        f"pulumi preview --stack {source} --expect-no-changes",
        f"pulumi stack export --stack {source} --file {stack}-before-shards.json",
        "# The shard program reads every setting from the platform's stack file, which must say policyShards (a shard",
        "# refuses a platform that registers its namespaces itself). Setting it changes nothing yet: nothing runs",
        f"# `pulumi up` of '{stack}' until step {len(shard_moves(plan, graph)) + 1}.",
        f"pulumi config set --stack {source} policyShards true   # commit stacks/Pulumi.{stack}.yaml",
    ]
    for step, (shard, groups) in enumerate(moves.items(), start=1):
        dest = shard_stack(stack, shard)
        namespaces = sorted({group.namespace for group in groups})
        lines += ["", f"# {step}. shard '{shard}' ({', '.join(stack_scope(graph, True, shard).namespaces)}): "
                  f"{sum(len(g.urns) for g in groups)} resources to '{dest}'"]
        lines += _stack_init(stack, dest, org, secrets_provider)
        lines += [f"# stacks/Pulumi.{dest}.yaml holds only these two settings (the rest is read from {stack}'s)",
                  f"pulumi config set --stack {_qualified(dest, org)} platformStack {stack}",
                  f"pulumi config set --stack {_qualified(dest, org)} shard {shard}",
                  "# one command per namespace, each group with every child named (see deploy/migrate_to_shards.py);",
                  "# the warnings about dependencies on the Namespace, Issuer and Linkerd CRDs left in the platform "
                  "are expected"]
        for namespace in namespaces:
            urns = [urn for group in groups if group.namespace == namespace for urn in group.urns]
            lines.append(f"pulumi state move --source {source} --dest {_qualified(dest, org)} --yes \\\n  "
                         + " \\\n  ".join(shlex.quote(urn) for urn in urns))
        lines += [f"# the shard program registers exactly what moved (a preview warns while '{stack}' exports no "
                  "shardContracts)",
                  f"pulumi preview --stack {_qualified(dest, org)} --expect-no-changes"]
    sharded = [name for shard in moves for name in stack_scope(graph, True, shard).namespaces]
    lines += ["", f"# {len(moves) + 1}. '{stack}' is the platform: it no longer registers the shards' groups. Its preview",
              "# creates and deletes nothing; it updates only the sharded namespaces, each gaining the annotation",
              f"# mtls-mesh.io/policy-shard ({', '.join(sharded)}), and adds the output shardContracts",
              f"pulumi preview --stack {source} --diff",
              "",
              f"# {len(moves) + 2}. Record it: the platform first (its shardContracts are what each shard waits for), "
              "then each shard, which changes nothing",
              f"pulumi up --stack {source} --yes"]
    lines += [f"pulumi up --stack {_qualified(shard_stack(stack, shard), org)} --yes" for shard in moves]
    return "\n".join(lines) + "\n"


class MigrationError(SystemExit):
    """A refusal meant for the person running the migration."""


def load(stack: str, project_dir: Path = PROJECT_DIR,
         config: Mapping[str, str] | None = None) -> tuple[MeshPlan, ServiceGraph, str | None]:
    """The plan and graph of a stack file (or of `config`), as the program compiles them, and the stack file's
    `secretsprovider`. Refuses a shard stack and a graph without shards."""
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
        raise MigrationError(f"{stack} is a shard stack (it sets shard/platformStack): name the single stack to split")
    try:
        settings = load_settings(config, stack, secret_keys=secret_keys, project_dir=project_dir)
        plan = compile_mesh(settings)
    except SettingsError as err:
        raise MigrationError(str(err)) from None
    if not shards_of(settings.graph):
        raise MigrationError(f"{stack}: no namespace of its graph has a `shard:`, so there is nothing to move. Give "
                             "the namespaces each shard registers `shard: <name>` in the graph (README, \"Shards: "
                             "meshes larger than one stack\"), then run this again")
    return plan, settings.graph, secrets_provider


def main(argv: Sequence[str] | None = None, project_dir: Path = PROJECT_DIR) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.migrate_to_shards", description=__doc__.split("\n\n")[1])
    parser.add_argument("--stack", required=True, help="the single stack to split (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--org", help="Pulumi Cloud organization (stacks named <org>/mtls-mesh/<stack>)")
    args = parser.parse_args(argv)
    plan, graph, secrets_provider = load(args.stack, project_dir)
    sys.stdout.write(migration_script(plan, graph, args.org, secrets_provider))
    return 0


if __name__ == "__main__":
    sys.exit(main())
