"""The preview identity's cluster objects: a pull request's `pulumi preview` runs the pull request's own code, so it
runs as an identity (the setting previewIdentity) that this cluster lets read what the program manages and dry-run
changes to it, and nothing else.

- `ValidatingAdmissionPolicy` + binding (admissionregistration.k8s.io/v1, GA since Kubernetes 1.30): every request of
  that identity that reaches admission (create, update, delete, connect) is refused unless `request.dryRun` is true.
  A dry-run passes admission and is never persisted; pulumi-kubernetes previews are dry-runs: a server-side apply
  PATCH with `dryRun=All`, or a dry-run create (provider/pkg/await/await.go `Creation`, `ssaUpdate`, `csaUpdate`,
  pulumi/pulumi-kubernetes 94977969d641).
- A ClusterRole + binding letting those dry-runs reach admission (RBAC runs first): get/list/watch and create/patch on
  the kinds the program manages. Writes are granted to RBAC only so that dry-runs are authorized: the admission policy
  is what refuses them for real, and the binding is registered after the policy (components/preview_identity.py).
- No write of any kind on admission configuration: Kubernetes never applies admission policies to requests on
  ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding objects (kubernetes test/integration/apiserver/cel
  `Test_PolicyExemption`, commit 3d30b97cd8b6), so a write granted there would be a real one, and could remove the
  policy. A preview of a change to these objects is forbidden its dry-run and falls back to a client-side diff, which
  the provider does for any forbidden preview (provider/pkg/provider/provider.go `Create`/`Update`, `IsForbidden`).
- Secrets: only those the program writes, by name, in their namespace (get to diff, patch to dry-run): a stack's state
  holds their values already, which the preview reads with the passphrase anyway; every other Secret of the cluster
  stays unreadable. A new Secret's preview is a forbidden create, shown client-side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plan.cert_manager import anchor_object_name, workload_secret_name
from plan.istio.names import KIND_RESOURCES as ISTIO_KIND_RESOURCES
from plan.linkerd.kinds import KIND_RESOURCES as LINKERD_KIND_RESOURCES
from plan.objects import metadata
from read.settings import PreviewIdentity, VaultSettings

ADMISSION_API = "admissionregistration.k8s.io/v1"
RBAC_API = "rbac.authorization.k8s.io/v1"
NAME = "mtls-mesh-preview"
POLICY_NAME = "mtls-mesh-preview-dry-run-only"
# What the policy asks of every request it matches (the AdmissionRequest's dryRun, always set by the API server; `has`
# keeps a request without it refused rather than an evaluation error, which failurePolicy Fail also refuses).
DRY_RUN_ONLY = "has(request.dryRun) && request.dryRun == true"
# Every operation admission sees; reads (get, list, watch) never reach admission.
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
READ = ("get", "list", "watch")
# What a preview sends: a dry-run create, or a server-side apply (or merge) PATCH with dryRun=All.
DRY_RUN = ("create", "patch")
# Admission policies never see requests on these (see above): readable, never writable.
ADMISSION_EXEMPT = frozenset({("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
                              ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding")})

# (API group, kind) -> the resource an RBAC rule names, for every kind the program registers: the plan's objects, the
# few registration builds from a provider's values (ConfigMaps of the roots, the anchor key, the workload TLS Secrets,
# the PrometheusRule), and these objects themselves. A kind missing here is refused by name (`resource_of`), so a new
# kind is either granted or noticed; tests/test_preview_identity.py checks every kind the program registers. Linkerd's
# kinds are here for every stack (the table deploy/operator_shards.py reads its plurals from, and Linkerd is the
# default mesh); another mesh's come from its plan (MeshPlan.kind_resources).
RESOURCES: Mapping[tuple[str, str], str] = {
    ("", "Namespace"): "namespaces",
    ("", "Service"): "services",
    ("", "ServiceAccount"): "serviceaccounts",
    ("", "ConfigMap"): "configmaps",
    ("", "Secret"): "secrets",
    ("apps", "Deployment"): "deployments",
    ("batch", "Job"): "jobs",
    ("batch", "CronJob"): "cronjobs",
    ("rbac.authorization.k8s.io", "Role"): "roles",
    ("rbac.authorization.k8s.io", "RoleBinding"): "rolebindings",
    ("rbac.authorization.k8s.io", "ClusterRole"): "clusterroles",
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): "clusterrolebindings",
    ("networking.k8s.io", "NetworkPolicy"): "networkpolicies",
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): "validatingadmissionpolicies",
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"): "validatingadmissionpolicybindings",
    ("cert-manager.io", "Certificate"): "certificates",
    ("cert-manager.io", "Issuer"): "issuers",
    ("trust.cert-manager.io", "Bundle"): "bundles",
    ("monitoring.coreos.com", "PodMonitor"): "podmonitors",
    ("monitoring.coreos.com", "PrometheusRule"): "prometheusrules",
    **LINKERD_KIND_RESOURCES,
    ("gateway.networking.k8s.io", "HTTPRoute"): "httproutes",
    ("gateway.networking.k8s.io", "GRPCRoute"): "grpcroutes",
    ("gateway.networking.k8s.io", "TLSRoute"): "tlsroutes",
    ("gateway.networking.k8s.io", "TCPRoute"): "tcproutes",
    # Istio's (a stack with mesh: istio): the base chart's files/crd-all.gen.yaml, istio 1.29.6 [IC] (docs/istio.md).
    **ISTIO_KIND_RESOURCES,
}
# The preview identity's own RBAC kinds (its ClusterRole and binding, the Secrets' Roles and bindings).
OWN_RBAC = frozenset({("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
                      ("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "RoleBinding")})
# Kinds registration builds itself from a provider's values (components/cert_manager.py, alerts.py), beside the plan's.
REGISTERED_OUTSIDE_THE_PLAN = (("", "ConfigMap"), ("", "Secret"), ("monitoring.coreos.com", "PrometheusRule"))


def group_kind(api_version: str, kind: str) -> tuple[str, str]:
    return api_version.rpartition("/")[0], kind


def resource_of(group: str, kind: str) -> str:
    try:
        return RESOURCES[(group, kind)]
    except KeyError:
        raise KeyError(f"plan/preview_identity.py RESOURCES has no RBAC resource for {group or 'core'} {kind}: add it "
                       "(its plural is the CRD's spec.names.plural), so previews may dry-run it") from None


def subject(identity: PreviewIdentity) -> dict[str, Any]:
    if identity.kind == "serviceaccount":
        return {"kind": "ServiceAccount", "name": identity.name, "namespace": identity.namespace}
    return {"kind": "User" if identity.kind == "user" else "Group", "apiGroup": "rbac.authorization.k8s.io",
            "name": identity.name}


def match_expression(identity: PreviewIdentity) -> str:
    """CEL true for a request of the identity. The setting's pattern admits no quote or backslash, so the name is a
    plain string literal."""
    if identity.username is not None:
        return f"request.userInfo.username == '{identity.username}'"
    return f"has(request.userInfo.groups) && '{identity.name}' in request.userInfo.groups"


def admission_policy(identity: PreviewIdentity) -> dict[str, Any]:
    return {
        "apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata(POLICY_NAME),
        "spec": {
            # An error in the expression refuses the request too: the identity never gets a write through a fault.
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["*"], "apiVersions": ["*"], "operations": list(OPERATIONS),
                # "*/*": every resource and every subresource (a subresource such as pods/exec or */status too).
                "resources": ["*/*"], "scope": "*"}]},
            "matchConditions": [{"name": "preview-identity", "expression": match_expression(identity)}],
            "validations": [{
                "expression": DRY_RUN_ONLY, "reason": "Forbidden",
                "message": "mtls-mesh: this is the preview identity (previewIdentity); it may only dry-run. Changes "
                           "reach the cluster through the deploy workflow, after review."}],
        },
    }


def admission_policy_binding() -> dict[str, Any]:
    return {"apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": metadata(POLICY_NAME),
            "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]}}


def managed_kinds(objects: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The (group, kind)s of the plan's objects, those registration adds, and the preview identity's own."""
    kinds = {group_kind(o["apiVersion"], o["kind"]) for o in objects}
    return kinds | set(REGISTERED_OUTSIDE_THE_PLAN) | ADMISSION_EXEMPT | OWN_RBAC


def cluster_role(objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Read, and dry-run, every kind the program manages but Secrets (never: preview_plan); admission
    configuration read only. Only the kinds of `objects`: a Linkerd stack's role names no Istio kind, and the reverse."""
    writable: dict[str, set[str]] = {}
    read_only: dict[str, set[str]] = {}
    for group, kind in sorted(managed_kinds(objects)):
        if (group, kind) == ("", "Secret"):
            continue
        target = read_only if (group, kind) in ADMISSION_EXEMPT else writable
        target.setdefault(group, set()).add(resource_of(group, kind))
    rules = [{"apiGroups": [group], "resources": sorted(resources), "verbs": [*READ, *DRY_RUN]}
             for group, resources in sorted(writable.items())]
    rules += [{"apiGroups": [group], "resources": sorted(resources), "verbs": list(READ)}
              for group, resources in sorted(read_only.items())]
    return {"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": metadata(NAME), "rules": rules}


def cluster_role_binding(identity: PreviewIdentity) -> dict[str, Any]:
    return {"apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": metadata(NAME),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [subject(identity)]}


@dataclass(frozen=True)
class PreviewPlan:
    """The preview identity's objects: `admission` (the policy and its binding), then `access` (the RBAC that lets
    its dry-runs reach admission). Registration applies `access` only after `admission`, so the grant never exists
    without the refusal."""

    identity: PreviewIdentity
    admission: tuple[dict[str, Any], ...]
    access: tuple[dict[str, Any], ...]


def preview_plan(identity: PreviewIdentity, plan: Any) -> PreviewPlan:
    """From the stack's other objects (`plan`: a MeshPlan without its preview part)."""
    # No Secret, not even the program's own: they hold the anchors' keys (dev) and the token reviewer's token, and a
    # dry-run patch answers with `data`. A Secret's preview then shows the program's side of the diff only
    # (pulumi-kubernetes falls back to a client-side diff when the dry run is forbidden).
    objects = plan.objects()
    multicluster = getattr(plan, "multicluster", None)
    if multicluster is not None:
        # A cluster stack's Links, credentials, gateway patches and policies are registered from this part of the
        # plan: their kinds too (a Link's preview is otherwise refused its dry run and falls back to a client diff).
        objects = [*objects, *multicluster.objects(), *multicluster.links, *multicluster.gateway_policy,
                   *multicluster.gateway_egress]
    return PreviewPlan(identity, (admission_policy(identity), admission_policy_binding()),
                       (cluster_role(objects), cluster_role_binding(identity)))


def preview_identity_objects(identity: PreviewIdentity, plan: Any) -> tuple[tuple[dict[str, Any], ...],
                                                                            tuple[dict[str, Any], ...]]:
    """(the admission policy and its binding, the RBAC) for `identity`, from `plan`'s other objects."""
    preview = preview_plan(identity, plan)
    return preview.admission, preview.access


def vault_preview_policy_name(vault: VaultSettings) -> str:
    """Beside the logins' policies (<vaultAuthRole>-identity, -ns-<namespace>), which it may read."""
    return f"{vault.login_prefix}-preview"


def vault_preview_policy(vault: VaultSettings, anchors: Iterable[str]) -> str:
    """The Vault policy of the preview token: read what the program manages (its mounts and their PKI roles and
    issuers, the logins' policies, the Kubernetes auth method's config and roles), write nothing.

    One write it keeps: the Vault provider swaps the token it is given for a child token when it configures
    (terraform-provider-vault `skip_child_token`, false by default; internal/provider/meta.go), which is
    `auth/token/create`. A child token carries at most its parent's policies (Vault token store: a non-root caller
    without sudo cannot add one), so the child of this token may do no more than it. Reads that act are denied: a GET
    of a PKI mount's crl/rotate rebuilds its CRL (Vault PKI API, "Rotate CRLs").
    """
    prefix = vault.mount_prefix
    mounts = sorted({m for a in anchors for m in (vault.root_mount(a), vault.intermediate_mount(a),
                                                  vault.workload_mount(a))})
    auth = vault.kubernetes_auth_path
    rules = [
        ("sys/mounts", ["read"]),
        (f"sys/mounts/{prefix}-*", ["read"]),
        (f"{prefix}-*", ["read", "list"]),
        *[(f"{mount}/crl/rotate{suffix}", ["deny"]) for mount in mounts for suffix in ("", "-delta")],
        (f"sys/policies/acl/{vault.auth_role}-*", ["read"]),
        (f"auth/{auth}/config", ["read"]),
        (f"auth/{auth}/role/*", ["read", "list"]),
        ("auth/token/create", ["update"]),
        ("auth/token/lookup-self", ["read"]),
    ]
    return "\n".join(f'path "{path}" {{\n  capabilities = {json.dumps(caps)}\n}}\n' for path, caps in rules)
