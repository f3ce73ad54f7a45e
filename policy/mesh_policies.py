"""The mesh's invariants as CrossGuard policies, over what a preview would deploy.

Each policy's `validate` is a plain function of ResourceValidationArgs / StackValidationArgs, so the tests call it on
the resources the mocks record for every stack. `__main__.py` only assembles them into the pack (constructing a
PolicyPack starts the analyzer server).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

MANAGED = ("app.kubernetes.io/part-of", "mtls-mesh")
CONTROL_PLANE_NAMESPACES = ("linkerd", "linkerd-viz", "linkerd-cni")
INJECT = "linkerd.io/inject"
OUT_OF_MESH = "mtls-mesh.io/out-of-mesh"
DEFAULT_INBOUND_POLICY = "config.linkerd.io/default-inbound-policy"
# A platform stack's namespace whose policy a shard stack registers (plan/namespaces.py POLICY_SHARD): the shard's
# preview checks its authorization, where the objects are.
POLICY_SHARD = "mtls-mesh.io/policy-shard"
NAMESPACE_TYPES = ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:NamespacePatch")
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
MESH_TLS_AUTHENTICATION = "kubernetes:policy.linkerd.io/v1alpha1:MeshTLSAuthentication"
AUTHORIZATION_POLICY = "kubernetes:policy.linkerd.io/v1alpha1:AuthorizationPolicy"
SERVER = "kubernetes:policy.linkerd.io/v1beta3:Server"
# What holds or creates the mesh's signing keys: deleting one breaks every identity that chains to it.
PKI_TYPES = (
    "vault:index/mount:Mount",
    "vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert",
    "vault:pkiSecret/secretBackendIntermediateCertRequest:SecretBackendIntermediateCertRequest",
    "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate",
    "vault:pkiSecret/secretBackendIntermediateSetSigned:SecretBackendIntermediateSetSigned",
    "tls:index/privateKey:PrivateKey",
    "tls:index/selfSignedCert:SelfSignedCert",
)
# Certificate lifetimes the mesh accepts: CAs up to 10 years, leaves up to a year, nothing under an hour.
MAX_CA_HOURS = 87600
MAX_LEAF_HOURS = 8760
MIN_HOURS = 1
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def _hours(text: str) -> float | None:
    """Go duration -> hours. The pack is a project of its own (its own venv), so it cannot import components/."""
    parts = _DURATION_PART.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * {"h": 1, "m": 1 / 60, "s": 1 / 3600}[u] for n, u in parts)


def _metadata(props: Any) -> dict[str, Any]:
    return (props.get("metadata") or {}) if isinstance(props, dict) or hasattr(props, "get") else {}


def _managed(props: Any) -> bool:
    labels = _metadata(props).get("labels") or {}
    return labels.get(MANAGED[0]) == MANAGED[1]


def workload_namespaces_injected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in NAMESPACE_TYPES or not _managed(args.props):
        return
    meta = _metadata(args.props)
    if meta.get("name") in CONTROL_PLANE_NAMESPACES:
        return
    annotations = meta.get("annotations") or {}
    inject = annotations.get(INJECT)
    if inject == "enabled":
        if not annotations.get(DEFAULT_INBOUND_POLICY):
            report(f"namespace {meta.get('name')} is injected without {DEFAULT_INBOUND_POLICY}: its rollout phase is undefined")
    elif not (inject == "disabled" and annotations.get(OUT_OF_MESH)):
        report(f"workload namespace {meta.get('name')} is not injected ({INJECT}: {inject!r}) and not declared "
               f"out of the mesh ({OUT_OF_MESH}); mesh it or declare it `meshed: false` in the service graph")


def no_wildcard_mesh_identities(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != MESH_TLS_AUTHENTICATION:
        return
    spec = args.props.get("spec") or {}
    wild = [i for i in spec.get("identities") or [] if "*" in i]
    wild += [f"{r.get('kind')}/{r.get('name')}" for r in spec.get("identityRefs") or [] if r.get("name") == "*"]
    if wild:
        report(f"MeshTLSAuthentication {_metadata(args.props).get('name')} admits wildcard identities {wild}: "
               "list the callers in the service graph instead")


def certificate_profiles(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == CERTIFICATE:
        spec = props.get("spec") or {}
        name = _metadata(props).get("name")
        key = spec.get("privateKey") or {}
        if key.get("algorithm") != "ECDSA" or key.get("size") not in (256, None):
            report(f"Certificate {name}: key {key.get('algorithm')}/{key.get('size')}, the mesh uses ECDSA P-256")
        duration, renew = _hours(spec.get("duration", "")), _hours(spec.get("renewBefore", ""))
        ceiling = MAX_CA_HOURS if spec.get("isCA") else MAX_LEAF_HOURS
        if duration is None or not MIN_HOURS <= duration <= ceiling:
            report(f"Certificate {name}: duration {spec.get('duration')!r} outside {MIN_HOURS}h..{ceiling}h")
        if duration is not None and (renew is None or renew >= duration):
            report(f"Certificate {name}: renewBefore {spec.get('renewBefore')!r} must be set and shorter than the duration")
    elif args.resource_type == "tls:index/privateKey:PrivateKey":
        if props.get("algorithm") != "ECDSA" or props.get("ecdsaCurve") != "P256":
            report(f"tls PrivateKey: {props.get('algorithm')}/{props.get('ecdsaCurve')}, the mesh's anchors are ECDSA P256")
    elif args.resource_type in PKI_TYPES[1:3]:
        if (props.get("keyType"), props.get("keyBits")) != ("ec", 256):
            report(f"Vault key {props.get('keyType')}/{props.get('keyBits')}, the mesh's CAs are EC P-256")


# Leaf keys of the workload certificates the program signs itself (no Vault): they sign nothing, and must go when their
# service leaves the graph, so they are not protected.
WORKLOAD_LEAF_PARENT = "mtls-mesh:trust:SelfSignedWorkloadCertificates$"


def pki_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if WORKLOAD_LEAF_PARENT in args.urn:
        return
    if args.resource_type in PKI_TYPES and not args.opts.protect:
        report(f"{args.resource_type} {args.name} holds or creates mesh signing keys and is not protected "
               "(set protectPki: true)")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict) or hasattr(value, "items"):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


# The pulumi-tls resources that take a private key, and the input that takes it. The program's own (plan/trust.py)
# are children of its trust components, where it creates the tls:PrivateKey each one is handed.
TLS_KEY_INPUTS = {
    "tls:index/selfSignedCert:SelfSignedCert": "privateKeyPem",
    "tls:index/certRequest:CertRequest": "privateKeyPem",
    "tls:index/locallySignedCert:LocallySignedCert": "caPrivateKeyPem",
}
OWN_KEY_PARENTS = ("mtls-mesh:trust:SelfSignedAnchors$", "mtls-mesh:trust:SelfSignedWorkloadCertificates$")
_ONE_PEM_KEY = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END \1PRIVATE KEY-----\n?")


def _own_key_input(args: ResourceValidationArgs) -> str | None:
    """The input of one of the program's own pulumi-tls resources that may hold the key of one of its own
    tls:PrivateKey resources: the resource is a child of the program's trust components (its URN's type chain), the
    input is the one pulumi-tls takes a key in, Pulumi keeps it secret (pulumi-tls marks it an additional secret
    output), and it holds one PEM private key and nothing else."""
    field = TLS_KEY_INPUTS.get(args.resource_type)
    if field is None or not any(f"::{parent}{args.resource_type}::" in args.urn for parent in OWN_KEY_PARENTS):
        return None
    if field not in (args.opts.additional_secret_outputs or []):
        return None
    value = args.props.get(field)
    return field if isinstance(value, str) and _ONE_PEM_KEY.fullmatch(value) else None


def key_material_only_in_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Private keys may only be in a Kubernetes Secret whose data Pulumi keeps secret, in the key's own resource, or
    where the program hands its own key to pulumi-tls to sign with (see _own_key_input)."""
    if args.resource_type == "tls:index/privateKey:PrivateKey":
        return
    own = _own_key_input(args)
    carrying = [key for key in args.props if key != own and any("PRIVATE KEY-----" in text for text in _strings(args.props[key]))]
    if not carrying:
        return
    secret_fields = set(args.opts.additional_secret_outputs or [])
    if args.resource_type == "kubernetes:core/v1:Secret" and {"data", "stringData"} <= secret_fields:
        return
    report(f"{args.resource_type} {args.name} carries private key material outside a Pulumi-secret Kubernetes Secret "
           f"(in {', '.join(sorted(carrying))})")


def deny_namespaces_authorized(args: StackValidationArgs, report: ReportViolation) -> None:
    """In a deny namespace, probes and scraping must stay authorized, and no authorization may point at nothing.

    A deny namespace is one whose Namespace says so, unless a shard stack registers its policy (then the shard's own
    check covers it), or, in a shard stack, which holds no Namespace, one whose Servers deny by default (each
    Server's accessPolicy is its namespace's phase, plan/linkerd/authorization.py)."""
    by_kind: dict[str, dict[tuple[str, str], Any]] = {}
    deny = set()
    for resource in args.resources:
        meta = _metadata(resource.props)
        if resource.resource_type in NAMESPACE_TYPES:
            annotations = meta.get("annotations") or {}
            if annotations.get(DEFAULT_INBOUND_POLICY) == "deny" and not annotations.get(POLICY_SHARD):
                deny.add(meta.get("name"))
            continue
        kind = resource.resource_type.rsplit(":", 1)[-1]
        by_kind.setdefault(kind, {})[(meta.get("namespace"), meta.get("name"))] = resource.props
        if kind == "Server" and ((resource.props or {}).get("spec") or {}).get("accessPolicy") == "deny":
            deny.add(meta.get("namespace"))
    for namespace in sorted(deny):
        if (namespace, "linkerd-admin") not in by_kind.get("Server", {}):
            report(f"deny namespace {namespace} has no linkerd-admin Server: probes and metrics scraping are denied")
        policies = {name for (ns, name) in by_kind.get("AuthorizationPolicy", {}) if ns == namespace}
        if "linkerd-admin-probes" not in policies:
            report(f"deny namespace {namespace} does not authorize kubelet probes of the proxies")
        # Probes and an unmeshed Prometheus are admitted by network; a whole address family would let anyone in.
        for (ns, name), props in by_kind.get("NetworkAuthentication", {}).items():
            wide = [n.get("cidr") for n in (props.get("spec") or {}).get("networks") or []
                    if str(n.get("cidr", "")).endswith("/0")]
            if ns == namespace and wide:
                report(f"deny namespace {namespace}: NetworkAuthentication {name} admits every address ({', '.join(wide)}); "
                       "set kubeletNetworks / prometheusNetworks to the node and Prometheus networks")
    for (namespace, name), props in by_kind.get("AuthorizationPolicy", {}).items():
        spec = props.get("spec") or {}
        target = spec.get("targetRef") or {}
        if target.get("kind") in ("Server", "HTTPRoute") and (namespace, target.get("name")) not in by_kind.get(target["kind"], {}):
            report(f"AuthorizationPolicy {namespace}/{name} targets {target.get('kind')} {target.get('name')}, which is not deployed")
        for ref in spec.get("requiredAuthenticationRefs") or []:
            if ref.get("kind") in ("MeshTLSAuthentication", "NetworkAuthentication") and \
                    (namespace, ref.get("name")) not in by_kind.get(ref["kind"], {}):
                report(f"AuthorizationPolicy {namespace}/{name} requires {ref.get('kind')} {ref.get('name')}, which is not deployed")


POLICIES = [
    ResourceValidationPolicy(
        name="workload-namespaces-injected",
        description="Every workload namespace of the mesh is injected with a rollout phase, or declared out of the mesh.",
        validate=workload_namespaces_injected),
    StackValidationPolicy(
        name="deny-namespaces-authorized",
        description="Deny namespaces keep probes and scraping authorized, admit no whole address family by network; "
                    "every AuthorizationPolicy resolves.",
        validate=deny_namespaces_authorized),
    ResourceValidationPolicy(
        name="no-wildcard-mesh-identities",
        description="No MeshTLSAuthentication admits identities by wildcard.",
        validate=no_wildcard_mesh_identities),
    ResourceValidationPolicy(
        name="certificate-profiles",
        description="ECDSA P-256 keys; certificate lifetimes within bounds and renewed before expiry.",
        validate=certificate_profiles),
    ResourceValidationPolicy(
        name="pki-protected",
        description="Trust anchors, Vault mounts and intermediates are protected against deletion.",
        validate=pki_protected),
    ResourceValidationPolicy(
        name="key-material-only-in-secrets",
        description="Private keys appear only in Pulumi-secret Kubernetes Secrets (or their own key resource, or where "
                    "the program hands its own key to pulumi-tls to sign with).",
        validate=key_material_only_in_secrets),
]
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY
