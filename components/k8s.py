"""Registering pure Kubernetes object dicts (objects.py) as Pulumi resources.

Builders elsewhere return plain `{apiVersion, kind, metadata, ...}` dicts so they can be checked against real
schemas; this module is the one place that turns such a dict into a typed pulumi-kubernetes resource.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pulumi
import pulumi_kubernetes as k8s

from plan.objects import group_manifest

# NetworkPolicy (metadata and spec only) takes the generic path below: the type token is the same
# (kubernetes:networking.k8s.io/v1:NetworkPolicy), and with thousands of them the typed class's input translation
# cost about 15% of the program's time (benchmarks/run.py).
# Core kinds get their typed class (better previews, server-side apply semantics); everything else is a custom resource.
_CORE_KINDS: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "NamespacePatch"): k8s.core.v1.NamespacePatch,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
}
_TOP_LEVEL_ARGS = {"metadata": "metadata", "spec": "spec", "data": "data", "stringData": "string_data", "type": "type",
                   "rules": "rules", "roleRef": "role_ref", "subjects": "subjects"}


def register(resource_name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions | None = None,
             kind_override: str | None = None) -> pulumi.CustomResource:
    """Register one object dict. `kind_override` registers e.g. a Namespace as a NamespacePatch (adoption)."""
    api_version, kind = obj["apiVersion"], kind_override or obj["kind"]
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    cls = _CORE_KINDS.get((api_version, kind))
    if cls is not None:
        unknown = set(body) - set(_TOP_LEVEL_ARGS)
        if unknown:
            raise ValueError(f"{kind} {resource_name}: no mapping for top-level fields {sorted(unknown)}")
        return cls(resource_name, **{_TOP_LEVEL_ARGS[k]: v for k, v in body.items()}, opts=opts)
    extra = set(body) - {"metadata", "spec"}
    if extra:
        raise ValueError(f"{kind} {resource_name}: custom resources carry only metadata and spec, not {sorted(extra)}")
    return k8s.apiextensions.CustomResource(resource_name, api_version=api_version, kind=kind,
                                            metadata=body["metadata"], spec=body.get("spec"), opts=opts)


def moved_in(component: pulumi.Resource) -> pulumi.ResourceOptions:
    """The options of a namespace's group under its component, that also find the group where a handover from a
    shard stack put it: at the stack's root, where shards register it and `pulumi state move` re-parents what it
    moves without its parent (pulumi pkg/cmd/pulumi/state/state_move.go lines 405-414, at 1b5949891b3c). The engine
    matches the group by this alias and each of its objects by the alias it derives from the group's
    (pkg/resource/deploy/step_generator.go `generateAliases`/`inheritedChildAlias`, lines 587-653; the group's
    aliases reach the provider's Construct, sdk/go/pulumi/provider.go line 175), so a namespace handed back to the
    platform is `same`, not deleted and re-created (plan/ownership.py, docs/changing-shards.md)."""
    return pulumi.ResourceOptions(parent=component, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)])


def register_group(resource_name: str, objects: Sequence[dict[str, Any]], opts: pulumi.ResourceOptions,
                   after: Sequence[pulumi.Resource], manifest: str | None = None) -> k8s.yaml.v2.ConfigGroup:
    """Register many objects as one `yaml/v2.ConfigGroup`: one registration for the program, while pulumi-kubernetes
    still creates each object as its own resource (named `<group>:<namespace>/<name>`, with its own diff and await).

    Ordering comes from the group's `depends_on` alone, and the manifest is a plain string the program knows in a
    preview as in `up`. The provider builds the children inside an apply over the manifest and builds none while it
    is unknown (pulumi-kubernetes `provider/pkg/provider/yaml/v2/configgroup.go` `Construct`), so a manifest computed
    from the ids of `after` hid every object from a first preview. The provider does not hand the group's options to
    the children (they get only `Parent`, yaml.go `Register`), and needs not to: the SDK sends the group's registration
    only once every `depends_on` resource's registration has returned (pulumi SDK `runtime/resource.py`
    `prepare_resource`, which awaits their URNs; `runtime/rpc.py` `_add_dependency`), the engine answers a custom
    resource's registration only when its step is done (pulumi `pkg/resource/deploy/source_eval.go`
    `RegisterResource`: "block waiting for the operation to finish"), and it calls the provider's Construct, which
    registers the children, from within the group's own registration (same function, `remote`). So in `up` no child
    is registered before its namespace, the CRD release or its Issuer exists (tests/test_preview.py checks each
    child's prerequisites against what its group waited for). The pinned SDK (pulumi-kubernetes 4.34.2,
    `yaml/v2/ConfigGroup.py`) registers the group as a remote component with these options unchanged; the provider
    source was read at pulumi-kubernetes main of 2026-07-01 (4.32.0), where Construct's apply has been the same since
    2024 (#2894): 4.34.2's provider source is not available offline here.

    Every object carries its namespace, so the provider never asks the API server whether a kind is namespaced
    (pulumi-kubernetes yaml/v2 `Normalize`), which could race a CRD installed in the same update.
    Nothing secret may go in: the manifest is one plain string.
    """
    for obj in objects:
        if obj["kind"] == "Secret" or not obj["metadata"].get("namespace"):
            raise ValueError(f"{resource_name}: {obj['kind']} {obj['metadata'].get('name')} cannot go in a group "
                             "(a Secret, or an object without a namespace)")
    manifest = group_manifest(objects) if manifest is None else manifest  # given: the plan's, of these objects
    return k8s.yaml.v2.ConfigGroup(resource_name, yaml=manifest,
                                   opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(after))))
