"""The policy shards of an Operator-delivered platform stack, as Pulumi Kubernetes Operator v2 objects.

For a platform stack (`mtls-mesh:policyShards: true`) handed to the Operator, each shard stack (its stack file
`stacks/Pulumi.<platform>-<shard>.yaml` names `platformStack` and `shard`) gets its own Stack and workspace identity:

- the `Stack` `mtls-mesh-<platform>-<shard>`, tracking the platform's branch `deploy/<platform>`, with the platform's
  Stack as its prerequisite, `refresh: false` and its workspace deleted after each successful update;
- a ServiceAccount of its own (the workspace pod runs as it), bound to `system:auth-delegator` (the workspace's agent
  checks the Operator's calls with TokenReview and SubjectAccessReview) and, in each of the shard's namespaces and
  nowhere else, to a Role allowing what the shard registers there: the kinds of its policy and workload-Certificate
  objects, read from the compiled plan (plan.mesh.compile_mesh), so a kind the builders start to emit is either in
  the Role or refused here by name. No cluster-wide write. Across a change of shards, each namespace the shard held
  at the commit it last applied keeps a Role that lets it remove every shard kind of its mesh and of that commit's
  mesh there (REMOVAL_VERBS; a switch of mesh deletes the old mesh's objects), until the shard has applied a commit
  without it (operator_stacks.py --applied / --applied-from-backend). A Linkerd shard's Role names no Istio kind, and
  an Istio shard's no Linkerd kind, beyond that.

What the Operator does with these fields was read from pulumi/pulumi-kubernetes-operator v2.9.0 (b713fae5a350), `SC`
below = operator/internal/controller/pulumi/stack_controller.go; the fields are operator/api/pulumi/shared/
stack_types.go's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from plan.mesh import MeshPlan, compile_mesh
from plan.preview_identity import RESOURCES as PLURALS
from plan.shards import shards_of
from read.errors import SettingsError
from read.graph import ServiceGraph
from read.settings import load_settings
from read.settings_format import load_declarations
from read.stack_files import read_stack_file, user_set

PREFIX = "mtls-mesh"
PLATFORM_STACK = f"{PREFIX}:platformStack"
SHARD = f"{PREFIX}:shard"
POLICY_SHARDS = f"{PREFIX}:policyShards"
# The Stack CRD refuses longer names: `size(self.metadata.name) <= 42` (operator/api/pulumi/v1/stack_types.go:180,
# the Workspace, its StatefulSet and Update objects are named after the Stack).
STACK_NAME_MAX = 42
# A shard runs only after its platform's Stack succeeded, at its current generation and reconcile request
# (isRequirementSatisfied, SC:295-313), and, with this requirement, did so within the last 5 minutes; a platform whose
# last success is older is annotated with pulumi.com/reconciliation-request (SC:926-946), so it runs `up` at its
# branch head (the shard's branch) first, and its success requeues the waiting shards (the prerequisite watch,
# SC:125-161). So a promotion more than 5 minutes after the platform's last success always runs the platform first.
# 5 minutes, not less: the shard's check after the platform's success comes seconds later (the watch), and its own
# retries after a failure (30 s, then 90 s: `cooldown`, SC:1357-1380) should not force another platform run. Not more:
# a platform success at an earlier promotion inside the window satisfies it without the commit being compared (the
# Operator compares none). Such a shard's update then waits until its platform has applied its contract
# (components/platform.py wait_for_platform): a refusal would count a failure, and three stall the Stack
# (`maxUpdateFailures`, SC:1084), so two promotions less than 5 minutes apart would need someone to annotate it.
PREREQUISITE_SUCCEEDED_WITHIN = "5m"
# The Operator's minimum (values under 60 count as 60: resyncFreq, SC:1384-1390). The platform Stack polls every
# 120 s, so a shard usually sees a new commit first and its annotation starts the platform's update at once; when the
# platform starts on its own poll, the annotation makes it run `up` once more after that update (a no-op).
SHARD_RESYNC_SECONDS = 60
# The verbs pulumi-kubernetes (provider/pkg/await/await.go, read at 94977969d641) uses on an object it registers:
# create (`Creation`: client.Create; a dry-run create in preview), get (`Read`, `Update` reads the live object first,
# the deletion source), patch (`ssaUpdate`: a server-side apply patch; `fixCSAFieldManagers`: a JSON patch), delete
# (`Deletion`), list and watch (the informers `Creation` and `Deletion` await through, namespaced:
# condition.NewDynamicSource / NewDeletionSource). `update` (PUT) is only for CustomResourceDefinitions, which a shard
# never registers.
VERBS = ("get", "list", "watch", "create", "patch", "delete")
# What removing an object takes (`Deletion`: get the live object, delete it, watch until it is gone). A shard keeps
# these on every shard kind of its mesh, and of the mesh of the commit it last applied (`removable_kinds`), in each
# namespace it held at that commit, whatever it registers now: the objects of a namespace that left it, or of a kind its builders no longer emit there, stay in its state
# until its next `up` deletes them, and a 403 there fails that `up` (pulumi-kubernetes passes only NotFound as
# "already gone", await.go `Deletion`), three times in a row a stall (stack_controller.go `maxUpdateFailures`).
REMOVAL_VERBS = ("get", "list", "watch", "delete")
# The provider also reports the Events of each object it awaits (NewEventAggregator, provider/pkg/await/watchers.go):
# read-only, in the same namespaces.
EVENTS_RULE = {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]}
# The kinds the policy and certificate builders emit in a shard's namespaces, per mesh (the `mesh` setting: a shard
# compiles its platform's plan, so its mesh is the platform's), each with the resource (plural) an RBAC rule names,
# taken from the one table of plurals (plan/preview_identity.py RESOURCES, which the preview identity's RBAC uses too).
# tests/test_operator_shards.py checks each against its upstream CRD (../shared/upstream; Istio's in the pinned base
# chart's files/crd-all.gen.yaml); NetworkPolicy is Kubernetes' own. A kind missing here is refused by name rather
# than left out of a Role.
SHARED_SHARD_KINDS = (("networking.k8s.io", "NetworkPolicy"), ("cert-manager.io", "Certificate"))
SHARD_KINDS = {
    "linkerd": (
        ("policy.linkerd.io", "Server"), ("policy.linkerd.io", "AuthorizationPolicy"),
        ("policy.linkerd.io", "MeshTLSAuthentication"), ("policy.linkerd.io", "NetworkAuthentication"),
        ("policy.linkerd.io", "HTTPRoute"), ("policy.linkerd.io", "EgressNetwork"),
        ("policy.linkerd.io", "ServerAuthorization"), ("gateway.networking.k8s.io", "HTTPRoute"),
        ("gateway.networking.k8s.io", "GRPCRoute"), ("gateway.networking.k8s.io", "TLSRoute"),
        ("gateway.networking.k8s.io", "TCPRoute"), *SHARED_SHARD_KINDS,
    ),
    "istio": (
        ("security.istio.io", "PeerAuthentication"), ("security.istio.io", "AuthorizationPolicy"),
        ("networking.istio.io", "Sidecar"), ("networking.istio.io", "ServiceEntry"), *SHARED_SHARD_KINDS,
    ),
}
RESOURCES = {kind: PLURALS[kind] for kinds in SHARD_KINDS.values() for kind in kinds}


def removable_kinds(*meshes: str) -> tuple[tuple[str, str], ...]:
    """What a shard may have to remove from a namespace it held: every shard kind of the meshes its state may hold
    objects of (its mesh now, and the one it last applied: a mesh switch deletes the old mesh's objects,
    docs/changing-mesh.md). Only those: a Linkerd shard's Role names no Istio kind, and the reverse."""
    return tuple(dict.fromkeys(kind for mesh in meshes for kind in SHARD_KINDS[mesh] if kind in RESOURCES))


class HeldNamespaces(tuple):
    """The namespaces a shard held at the commit it last applied (a tuple of names, compared as one), and `mesh`, the
    mesh of that commit (None: not known), whose kinds its state may still hold there."""

    mesh: str | None

    def __new__(cls, names: Iterable[str] = (), mesh: str | None = None) -> "HeldNamespaces":
        held = super().__new__(cls, names)
        held.mesh = mesh
        return held


class GeneratorError(SystemExit):
    """A refusal with a message for the person running the generator."""


@dataclass(frozen=True)
class ShardStack:
    """One shard stack of a platform: its namespaces and, per namespace, the (group, kind)s it registers there;
    `held`: the namespaces it held at the commit it last applied (all of them its objects may still be in), so
    `leaving` are those it no longer registers and must still be able to empty."""

    stack: str
    platform: str
    shard: str
    kinds: Mapping[str, tuple[tuple[str, str], ...]]
    held: tuple[str, ...] = ()
    # The platform's mesh at this commit, and the one of the commit the shard last applied (None: not known).
    mesh: str = "linkerd"
    held_mesh: str | None = None

    @property
    def removable(self) -> tuple[tuple[str, str], ...]:
        return removable_kinds(self.mesh, *([self.held_mesh] if self.held_mesh else []))

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.kinds)

    @property
    def leaving(self) -> tuple[str, ...]:
        return tuple(n for n in self.held if n not in self.kinds)


def stack_object_name(stack: str) -> str:
    """The Operator's Stack object of a stack, refused here when the Stack CRD would refuse it."""
    name = f"{PREFIX}-{stack}"
    if len(name) > STACK_NAME_MAX:
        raise GeneratorError(
            f"{stack}: its Operator Stack would be named {name} ({len(name)} characters), and the Stack CRD allows at "
            f"most {STACK_NAME_MAX} (pulumi-kubernetes-operator operator/api/pulumi/v1/stack_types.go, "
            f"`size(self.metadata.name) <= 42`). Shorten the shard's name in the service graph "
            f"(namespaces.<name>.shard) or the platform stack's name, so that <platform>-<shard> has at most "
            f"{STACK_NAME_MAX - len(PREFIX) - 1} characters")
    return name


def _document(stack: str, project_dir: Path) -> dict[str, str]:
    """The stack's config as the Pulumi CLI hands it to the program (read/stack_files.py: every default filled in)."""
    try:
        return read_stack_file(project_dir / "stacks" / f"Pulumi.{stack}.yaml", project_dir=project_dir)[0]
    except SettingsError as err:
        raise GeneratorError(f"stacks/Pulumi.{stack}.yaml: {err}") from None


def shard_stack_files(platform: str, project_dir: Path) -> dict[str, dict[str, str]]:
    """The stack files naming `platform` as their platformStack: stack -> its config (as the CLI hands it)."""
    found = {}
    for path in sorted((project_dir / "stacks").glob("Pulumi.*.yaml")):
        stack = path.name.split(".")[1]
        config = _document(stack, project_dir)
        if config.get(PLATFORM_STACK) == platform:
            found[stack] = config
    return found


def platform_plan(platform: str, project_dir: Path) -> tuple[ServiceGraph, MeshPlan]:
    """The platform's graph and compiled plan, as its own stack and each shard compile them (the same settings and
    graph, from the platform's stack file)."""
    try:
        raw, secret_keys = read_stack_file(project_dir / "stacks" / f"Pulumi.{platform}.yaml", project_dir=project_dir)
    except SettingsError as err:
        raise GeneratorError(f"{platform}: the platform's stack file cannot be read, so its shards cannot be "
                             f"generated:\n{err}") from None
    # policyShards says which part of the plan a stack registers, not what the plan is (plan/shards.py); a Pulumi.yaml
    # that does not declare it yet compiles the same plan without it.
    if "policyShards" not in load_declarations(project_dir / "Pulumi.yaml"):
        raw.pop(POLICY_SHARDS, None)
    try:
        settings = load_settings(raw, platform, secret_keys=secret_keys, project_dir=project_dir)
        return settings.graph, compile_mesh(settings)
    except SettingsError as err:
        raise GeneratorError(f"{platform}: the platform's settings do not compile, so its shards cannot be generated:\n"
                         f"{err}") from None


def plan_mesh(plan: MeshPlan) -> str:
    """The mesh a compiled plan is for (plan/mesh.py builds exactly one control plane)."""
    return "istio" if plan.istio is not None else "linkerd"


def _kinds(objects: Iterable[Mapping[str, Any]], where: str, mesh: str) -> tuple[tuple[str, str], ...]:
    kinds = set()
    for obj in objects:
        key = (obj["apiVersion"].rpartition("/")[0], obj["kind"])
        if key not in RESOURCES or key not in SHARD_KINDS[mesh]:
            raise GeneratorError(f"{where}: the plan registers {obj['apiVersion']} {obj['kind']}, which "
                             f"deploy/operator_shards.py SHARD_KINDS[{mesh!r}] / RESOURCES does not map to an RBAC "
                             "resource: add it there (its plural is the CRD's spec.names.plural, in "
                             "plan/preview_identity.py RESOURCES), so the shard's Role allows it")
        kinds.add(key)
    return tuple(sorted(kinds))


def shard_stacks(platform: str, project_dir: Path,
                 held: Mapping[str, Iterable[str]] | None = None) -> list[ShardStack]:
    """Every shard stack of an operator-delivered platform, checked against the platform's graph; [] for a platform
    without policyShards. `held`: per shard stack, the namespaces it held at the commit it last applied
    (`held_namespaces`); each keeps the rights to empty them until it has applied a commit without them."""
    config = _document(platform, project_dir)
    files = shard_stack_files(platform, project_dir)
    if config.get(POLICY_SHARDS) != "true":
        if files:
            raise GeneratorError(f"{', '.join(files)}: name platformStack {platform}, but stacks/Pulumi.{platform}.yaml "
                             f"does not set {POLICY_SHARDS}: true, so {platform} registers every namespace's policy "
                             "itself. Set it there, or remove these shard stack files")
        return []
    graph, plan = platform_plan(platform, project_dir)
    shards = shards_of(graph)
    stacks = []
    for stack, shard_config in files.items():
        # What the shard's file sets besides its own keys: a key at its default is what the CLI filled in.
        extra = sorted(set(user_set(shard_config, load_declarations(project_dir / "Pulumi.yaml")))
                       - {PLATFORM_STACK, SHARD, f"{PREFIX}:kubeContext", f"{PREFIX}:kubeconfig"})
        shard = shard_config.get(SHARD)
        if extra:
            raise GeneratorError(f"stacks/Pulumi.{stack}.yaml: {', '.join(extra)} set in a shard stack, which holds only "
                             f"platformStack, shard and how to reach the cluster (kubeContext, kubeconfig): every "
                             f"other setting is the platform's: move them to "
                             f"stacks/Pulumi.{platform}.yaml")
        if shard not in shards:
            raise GeneratorError(f"stacks/Pulumi.{stack}.yaml: {SHARD} is {shard!r}, not a shard of the service graph "
                             f"({', '.join(shards) or 'it names none'}): give its namespaces `shard: {shard}`")
        if stack != f"{platform}-{shard}":
            raise GeneratorError(f"stacks/Pulumi.{stack}.yaml: a shard stack is named <platformStack>-<shard>, "
                             f"{platform}-{shard}: rename the file and the stack")
        stack_object_name(stack)
        kinds = {}
        for namespace in shards[shard]:
            ns = plan.namespaces[namespace]
            kinds[namespace] = _kinds([*ns.policy, *ns.certificates], f"{stack}, namespace {namespace}",
                                      plan_mesh(plan))
        # What its state may hold objects in: where it registers some now, and where it did at the commit it last
        # applied (a namespace without services at both has no objects: no Role).
        before = (held or {}).get(stack, ())
        holding = [n for n in shards[shard] if kinds[n]]
        stacks.append(ShardStack(stack, platform, shard, kinds, tuple(dict.fromkeys([*holding, *before])),
                                 mesh=plan_mesh(plan), held_mesh=getattr(before, "mesh", None)))
    missing = [shard for shard in shards if f"{platform}-{shard}" not in files]
    if missing:
        raise GeneratorError(f"{platform}: the service graph's shard(s) {', '.join(missing)} have no stack file "
                         f"({', '.join(f'stacks/Pulumi.{platform}-{s}.yaml' for s in missing)}): the platform does "
                         "not register their namespaces' policy, so nothing would. Add each with "
                         f"`{PLATFORM_STACK}: {platform}` and `{SHARD}: <shard>`")
    return stacks


def _rules(resources: Iterable[tuple[str, str]], verbs: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[str, set[str]] = {}
    for group, resource in resources:
        groups.setdefault(group, set()).add(resource)
    return [{"apiGroups": [group], "resources": sorted(names), "verbs": list(verbs)}
            for group, names in sorted(groups.items())]


def role_rules(kinds: Iterable[tuple[str, str]], removable: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """The Role of one namespace of a shard: what it registers there (one rule per API group), the removal of every
    other kind of `removable` (those it could have registered there at the commit it last applied, when it held the
    namespace then: ShardStack.removable), and reading Events."""
    writes = {(group, RESOURCES[(group, kind)]) for group, kind in kinds}
    rules = _rules(writes, VERBS)
    removals = {(group, RESOURCES[(group, kind)]) for group, kind in removable} - writes
    if removals:
        rules += _rules(removals, REMOVAL_VERBS)
    return [*rules, EVENTS_RULE] if rules else []


def held_namespaces(platform: str, applied_dir: Path) -> dict[str, HeldNamespaces]:
    """Per shard stack of `platform`, the namespaces it held in the project tree `applied_dir` (a checkout of the
    commit the shard last applied), with that commit's mesh: what its state may still hold objects in, and of."""
    stacks_dir = applied_dir / "stacks"
    if not (stacks_dir / f"Pulumi.{platform}.yaml").is_file():
        return {}
    config = _document(platform, applied_dir)
    if config.get(POLICY_SHARDS) != "true":
        return {}
    graph, plan = platform_plan(platform, applied_dir)
    files = shard_stack_files(platform, applied_dir)
    return {stack: HeldNamespaces(shards_of(graph).get(str(c.get(SHARD)), ()), plan_mesh(plan))
            for stack, c in files.items()}


def last_applied_commit(history: Iterable[Mapping[str, Any]]) -> str | None:
    """The commit of a stack's newest successful update (`pulumi stack history --json`, newest first; the CLI records
    the checkout's HEAD as `git.head`, pulumi pkg/backend/updates.go), None when it has none yet."""
    for update in history:
        if update.get("kind") == "update" and update.get("result") == "succeeded":
            return (update.get("environment") or {}).get("git.head")
    return None


def workspace_rbac(shard: ShardStack, operator_namespace: str,
                   annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    """The shard's workspace identity: its ServiceAccount (in the Operator's namespace, beside the Stack), the
    system:auth-delegator binding every workspace needs, and a Role + RoleBinding in each of its namespaces."""
    name = stack_object_name(shard.stack)
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": operator_namespace}]
    labels = {"app.kubernetes.io/part-of": PREFIX, "mtls-mesh.io/environment": shard.platform,
              "mtls-mesh.io/shard": shard.shard}
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": operator_namespace, "labels": labels,
                            **({"annotations": dict(annotations)} if annotations else {})}}
    # pulumi-kubernetes-operator agent/pkg/server/auth.go (ServiceAccountPermissionsErrorMessage) and docs/migration.md
    # "Service Account": the agent authenticates the Operator's calls with TokenReview and SubjectAccessReview.
    delegator = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": f"{name}:system:auth-delegator", "labels": labels},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": "system:auth-delegator"},
                 "subjects": subject}
    documents = [account, delegator]
    held = set(shard.held)
    for namespace in dict.fromkeys([*shard.kinds, *shard.leaving]):
        rules = role_rules(shard.kinds.get(namespace, ()), shard.removable if namespace in held else ())
        if not rules:
            continue  # nothing registered there (a namespace without services): no access either
        # A namespace the shard leaves: its Role lets it delete, and goes from the manifest once the shard has
        # applied a commit without it (the generator's --applied then no longer names it as held).
        role_labels = {**labels, **({"mtls-mesh.io/leaving": "true"} if namespace not in shard.kinds else {})}
        documents.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                          "metadata": {"name": name, "namespace": namespace, "labels": role_labels}, "rules": rules})
        documents.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                          "metadata": {"name": name, "namespace": namespace, "labels": role_labels},
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                          "subjects": subject})
    return documents


def shard_stack_object(shard: ShardStack, *, operator_namespace: str, qualified_stack: str, backend: str, repo: str,
                       env_refs: Mapping[str, Any], pod_labels: Mapping[str, str],
                       git_auth: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Operator's Stack of one shard."""
    name = stack_object_name(shard.stack)
    spec: dict[str, Any] = {
        "serviceAccountName": name,
        "stack": qualified_stack,
        "backend": backend,
        "projectRepo": repo,
        # The platform's branch: the shard runs the commit the platform was promoted to; the program reads every
        # setting but these from the platform's stack file in the same checkout.
        "branch": f"refs/heads/deploy/{shard.platform}",
        # The prerequisite is looked up in the Stack's own namespace (SC:907), so both are in operator_namespace.
        "prerequisites": [{"name": stack_object_name(shard.platform),
                           "requirement": {"succeededWithinDuration": PREREQUISITE_SUCCEEDED_WITHIN}}],
        # `true` would be `pulumi up --refresh` on every run (SC:1815 -> agent/pkg/server/server.go:803-805): one GET
        # per object of the shard before each update. Its objects are written only by this stack, so drift is a
        # person's `kubectl edit`, which the next update of that group corrects.
        "refresh": False,
        "resyncFrequencySeconds": SHARD_RESYNC_SECONDS,
        "destroyOnFinalize": False,
        # Retain (the default) keeps each Stack's workspace, a StatefulSet of one pod, running between updates
        # (operator/internal/controller/auto/workspace_controller.go); Delete removes it after each successful update
        # (SC:868-886), so N shards are not N idle pods. A failed update keeps its workspace for inspection. The cost:
        # each update starts a pod, fetches the commit and runs `pulumi install` (workspace_controller.go:317-324).
        "workspaceReclaimPolicy": "Delete",
        "envRefs": dict(env_refs),
        # Only how the Operator's workspace reaches its cluster (the stack file's kubeContext names a kubeconfig context
        # the pod does not have): which platform and shard, like every other setting, come from the stack file at the
        # branch's commit, so no manifest can change them beside promotion.
        "config": {f"{PREFIX}:kubeContext": "in-cluster"},
    }
    if git_auth:
        spec["gitAuth"] = dict(git_auth)
    if pod_labels:
        spec["workspaceTemplate"] = {"spec": {"podTemplate": {"metadata": {"labels": dict(pod_labels)}}}}
    return {
        "apiVersion": "pulumi.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": operator_namespace,
                     "labels": {"app.kubernetes.io/part-of": PREFIX, "mtls-mesh.io/environment": shard.platform,
                                "mtls-mesh.io/shard": shard.shard}},
        "spec": spec,
    }
