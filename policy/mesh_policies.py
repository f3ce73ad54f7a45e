"""The mesh's invariants as CrossGuard policies, over what a preview would deploy.

Each policy's `validate` is a plain function of ResourceValidationArgs / StackValidationArgs, so the tests call it on
the resources the mocks record for every stack. `__main__.py` only assembles them into the pack (constructing a
PolicyPack starts the analyzer server).
"""

from __future__ import annotations

import ipaddress
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
CONTROL_PLANE_NAMESPACES = ("linkerd", "linkerd-viz", "linkerd-cni", "istio-system")
INJECT = "linkerd.io/inject"
# With `mesh: istio` (plan/istio/namespaces.py): injection is this namespace label, and the rollout phase is in the
# namespace's PeerAuthentication and AuthorizationPolicy, not on the namespace.
ISTIO_INJECTION = "istio-injection"
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
    """Every namespace the stack registers, labelled or not: one that lost its label must not lose this check too."""
    if args.resource_type not in NAMESPACE_TYPES:
        return
    meta = _metadata(args.props)
    if meta.get("name") in CONTROL_PLANE_NAMESPACES:
        return
    annotations = meta.get("annotations") or {}
    istio_injection = (meta.get("labels") or {}).get(ISTIO_INJECTION)
    if istio_injection is not None and INJECT not in annotations:
        if not (istio_injection == "enabled" or (istio_injection == "disabled" and annotations.get(OUT_OF_MESH))):
            report(f"workload namespace {meta.get('name')} is not injected ({ISTIO_INJECTION}: {istio_injection!r}) "
                   f"and not declared out of the mesh ({OUT_OF_MESH}); mesh it or declare it `meshed: false` in the "
                   "service graph")
        return
    inject = annotations.get(INJECT)
    if inject == "enabled":
        if not annotations.get(DEFAULT_INBOUND_POLICY):
            report(f"namespace {meta.get('name')} is injected without {DEFAULT_INBOUND_POLICY}: its rollout phase is undefined")
    elif not (inject == "disabled" and annotations.get(OUT_OF_MESH)):
        report(f"workload namespace {meta.get('name')} is not injected ({INJECT}: {inject!r}) and not declared "
               f"out of the mesh ({OUT_OF_MESH}); mesh it or declare it `meshed: false` in the service graph")


def workload_namespaces_managed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every namespace the stack registers carries the program's label: what `kubectl get ns -l` and the cluster's
    own admission rules select the mesh's namespaces by."""
    if args.resource_type in NAMESPACE_TYPES and not _managed(args.props):
        meta = _metadata(args.props)
        report(f"namespace {meta.get('name')} lacks the label {MANAGED[0]}={MANAGED[1]} "
               f"(labels: {dict(meta.get('labels') or {})}): build it with plan/objects.py metadata()")


def no_wildcard_mesh_identities(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No identity that stands for more than one ServiceAccount. Linkerd's policy controller turns an identityRef of
    kind Namespace into `*.<ns>.serviceaccount.identity...`, every account of that namespace (linkerd2 edge-26.8.3,
    19a0d90d, policy-controller/k8s/index/src/inbound/meshtls_authentication.rs and cluster_info.rs
    `namespace_identity`), and the CRD documents a ref without `name` as "all resources of the specified Group and
    Kind in the specified namespace" (charts/linkerd-crds/templates/policy/meshtls-authentication.yaml)."""
    if args.resource_type != MESH_TLS_AUTHENTICATION:
        return
    spec = args.props.get("spec") or {}
    wild = [i for i in spec.get("identities") or [] if "*" in i]
    for ref in spec.get("identityRefs") or []:
        where = ref.get("namespace") or _metadata(args.props).get("namespace")
        if ref.get("kind") == "Namespace":
            wild.append(f"Namespace/{ref.get('name') or where} (every ServiceAccount in it)")
        elif not ref.get("name") or "*" in ref.get("name"):
            wild.append(f"{ref.get('kind')}/{ref.get('name') or '(no name: all of them)'} in {where}")
    if wild:
        report(f"MeshTLSAuthentication {_metadata(args.props).get('name')} admits namespace-wide or wildcard "
               f"identities {wild}: list the callers' ServiceAccounts in the service graph instead")


def authorizations_name_their_clients(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """An AuthorizationPolicy requires all of its authentications, so one that lists none requires nothing: Linkerd
    makes it unauthenticated from every network, 0.0.0.0/0 and ::/0 (linkerd2 edge-26.8.3, 19a0d90d,
    policy-controller/k8s/index/src/inbound/index.rs `policy_client_authz`)."""
    if args.resource_type != AUTHORIZATION_POLICY:
        return
    spec = args.props.get("spec") or {}
    if not spec.get("requiredAuthenticationRefs"):
        meta = _metadata(args.props)
        target = spec.get("targetRef") or {}
        report(f"AuthorizationPolicy {meta.get('namespace')}/{meta.get('name')} on {target.get('kind')} "
               f"{target.get('name')} has no requiredAuthenticationRefs: it admits every client from every address")


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


ADMIN_SERVER = "linkerd-admin"
# The proxy's admin port (linkerd2 chart values proxy.ports.admin), where Prometheus scrapes /metrics.
PROXY_ADMIN_PORT = 4191
METRICS_PATH = "/metrics"
# A network authorization is meant for the nodes and for an unmeshed Prometheus. Half an address family (a /1) is
# already more than any cluster's networks: at that width it stands for "everywhere", however it is written
# (0.0.0.0/0, 0.0.0.0/1 + 128.0.0.0/1, 0.0.0.0/0 except a few addresses).
MAX_NETWORK_SHARE = 0.5


class _Stack:
    """What the stack's deny namespaces hold, indexed once for the stack policies.

    A deny namespace is one whose Namespace says so, or, in a shard stack, which holds no Namespace, one where a
    Server denies by default (each Server's accessPolicy is its namespace's phase, plan/linkerd/authorization.py) or
    where egress is denied.

    `checked`: the deny namespaces whose authorization this stack must hold. A platform leaves a namespace whose
    Namespace names a policy shard to that shard's preview, unless it registers Servers there itself (the annotation
    alone must not excuse a stack from the checks)."""

    def __init__(self, resources: Iterable[Any]):
        self.objects: dict[str, dict[tuple[str, str], Any]] = {}
        self.deny: set[str] = set()
        sharded: set[str] = set()
        for resource in resources:
            meta = _metadata(resource.props)
            if resource.resource_type in NAMESPACE_TYPES:
                annotations = meta.get("annotations") or {}
                if annotations.get(DEFAULT_INBOUND_POLICY) == "deny":
                    self.deny.add(meta.get("name"))
                    if annotations.get(POLICY_SHARD):
                        sharded.add(meta.get("name"))
                continue
            kind = resource.resource_type.rsplit(":", 1)[-1]
            self.objects.setdefault(kind, {})[(meta.get("namespace"), meta.get("name"))] = resource.props
            if kind == "Server" and _spec(resource.props).get("accessPolicy") == "deny":
                self.deny.add(meta.get("namespace"))
            # The program controls egress only in deny namespaces (plan/linkerd/authorization.py namespace_objects): a
            # shard's namespace whose Servers were all opened is still known for one by its Deny EgressNetwork.
            if kind == "EgressNetwork" and _spec(resource.props).get("trafficPolicy") == "Deny":
                self.deny.add(meta.get("namespace"))
        holding = {ns for ns, _ in self.objects.get("Server", {})}
        self.checked = {ns for ns in self.deny if ns not in sharded or ns in holding}

    def of(self, kind: str, namespace: str) -> dict[str, Any]:
        return {name: props for (ns, name), props in self.objects.get(kind, {}).items() if ns == namespace}

    def resolves(self, namespace: str, ref: Any) -> bool:
        kind = ref.get("kind")
        if kind in ("MeshTLSAuthentication", "NetworkAuthentication"):
            return (ref.get("namespace") or namespace, ref.get("name")) in self.objects.get(kind, {})
        return kind == "ServiceAccount" and bool(ref.get("name"))


def _spec(props: Any) -> Any:
    return (props or {}).get("spec") or {}


def _metrics_match(match: Any) -> tuple[int, int] | None:
    """How specifically an HTTPRoute match takes a GET of /metrics: (2, n) exact, (1, n) by a prefix of n characters,
    None not at all. A missing path is the CRD's default, PathPrefix `/`."""
    if match.get("method") not in (None, "GET"):
        return None
    path = match.get("path") or {}
    kind, value = path.get("type") or "PathPrefix", path.get("value") or "/"
    if kind == "Exact":
        return (2, len(value)) if value == METRICS_PATH else None
    if kind == "PathPrefix":
        prefix = value.rstrip("/")
        return (1, len(prefix)) if METRICS_PATH == prefix or METRICS_PATH.startswith(prefix + "/") else None
    return None


def _scrape_authorized(stack: _Stack, namespace: str) -> str | None:
    """Why the proxies' /metrics in `namespace` cannot be scraped under deny, or None when it can.

    Once a Server has routes, the proxy serves a request by its most specific route and answers 404 where none
    matches (linkerd2-proxy linkerd/app/inbound/src/policy/http.rs); the route's own AuthorizationPolicies and the
    Server's (or the Namespace's) apply to it. Each must require something, all of it deployed."""
    routes: dict[str, tuple[int, int]] = {}
    has_routes = False
    for name, route in stack.of("HTTPRoute", namespace).items():
        parents = _spec(route).get("parentRefs") or []
        if not any(p.get("kind") == "Server" and p.get("name") == ADMIN_SERVER for p in parents):
            continue
        has_routes = True
        rules = _spec(route).get("rules") or [{}]
        scores = [_metrics_match(m) for rule in rules for m in (rule.get("matches") or [{}])]
        best = max((s for s in scores if s), default=None)
        if best:
            routes[name] = best
    if has_routes and not routes:
        return f"no route of the {ADMIN_SERVER} Server takes GET {METRICS_PATH}: the proxy answers 404"
    serving = {name for name, score in routes.items() if score == max(routes.values())}
    for name, policy in stack.of("AuthorizationPolicy", namespace).items():
        spec = _spec(policy)
        target = spec.get("targetRef") or {}
        applies = (target.get("kind") == "Server" and target.get("name") == ADMIN_SERVER) or \
            target.get("kind") == "Namespace" or (target.get("kind") == "HTTPRoute" and target.get("name") in serving)
        refs = spec.get("requiredAuthenticationRefs") or []
        if applies and refs and all(stack.resolves(namespace, ref) for ref in refs):
            break
    else:
        where = f"HTTPRoute {', '.join(sorted(serving))}" if serving else f"Server {ADMIN_SERVER}"
        return f"no AuthorizationPolicy with deployed authentications admits {METRICS_PATH} ({where})"
    # The network layer: under a default-deny NetworkPolicy for every pod, some policy for every pod must let a
    # client in on the admin port.
    policies = stack.of("NetworkPolicy", namespace).values()
    isolated = any(not _selects_some(p) and "Ingress" in (_spec(p).get("policyTypes") or ["Ingress"]) for p in policies)
    admits = any(not _selects_some(p) and any(rule.get("from") and _admits_port(rule, PROXY_ADMIN_PORT)
                                              for rule in _spec(p).get("ingress") or [])
                 for p in policies)
    if isolated and not admits:
        return f"its NetworkPolicies deny ingress to every pod and none admits port {PROXY_ADMIN_PORT} ({ADMIN_SERVER})"
    return None


def _selects_some(policy: Any) -> bool:
    """Whether a NetworkPolicy's podSelector narrows (an empty selector is every pod of the namespace)."""
    selector = _spec(policy).get("podSelector") or {}
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def _admits_port(rule: Any, number: int) -> bool:
    ports = rule.get("ports") or []
    return not ports or any(p.get("port") in (None, number, ADMIN_SERVER) or
                            (isinstance(p.get("port"), int) and p.get("endPort") and p["port"] <= number <= p["endPort"])
                            for p in ports)


def deny_namespaces_authorized(args: StackValidationArgs, report: ReportViolation) -> None:
    """In a deny namespace, probes and scraping must stay authorized, and no authorization may point at nothing."""
    stack = _Stack(args.resources)
    for namespace in sorted(stack.checked):
        if ADMIN_SERVER not in stack.of("Server", namespace):
            report(f"deny namespace {namespace} has no {ADMIN_SERVER} Server: probes and metrics scraping are denied")
        if "linkerd-admin-probes" not in stack.of("AuthorizationPolicy", namespace):
            report(f"deny namespace {namespace} does not authorize kubelet probes of the proxies")
        why = _scrape_authorized(stack, namespace)
        if why:
            report(f"deny namespace {namespace}: Prometheus cannot scrape the proxies, {why}")
    for (namespace, name), props in stack.objects.get("AuthorizationPolicy", {}).items():
        spec = _spec(props)
        target = spec.get("targetRef") or {}
        if target.get("kind") in ("Server", "HTTPRoute") and (namespace, target.get("name")) not in stack.objects.get(target["kind"], {}):
            report(f"AuthorizationPolicy {namespace}/{name} targets {target.get('kind')} {target.get('name')}, which is not deployed")
        for ref in spec.get("requiredAuthenticationRefs") or []:
            if ref.get("kind") in ("MeshTLSAuthentication", "NetworkAuthentication") and not stack.resolves(namespace, ref):
                report(f"AuthorizationPolicy {namespace}/{name} requires {ref.get('kind')} {ref.get('name')}, which is not deployed")


def _everyone(peer: Any) -> bool:
    """A NetworkPolicy peer that is every pod of every namespace (an empty peer, or an empty namespaceSelector with
    no or an empty podSelector)."""
    if not peer:
        return True
    selectors = {k: v for k, v in peer.items() if k in ("namespaceSelector", "podSelector")}
    namespaces = selectors.get("namespaceSelector")
    pods = selectors.get("podSelector")
    return namespaces is not None and not namespaces and not pods and "ipBlock" not in peer


def deny_namespaces_closed(args: StackValidationArgs, report: ReportViolation) -> None:
    """Nothing in a deny namespace opens it again: every Server denies what no authorization admits (the CRD's
    default, deny: charts/linkerd-crds/templates/policy/server.yaml), and no NetworkPolicy admits ingress from every
    pod of the cluster. (From every address by ipBlock: deny-networks-not-everything.)"""
    stack = _Stack(args.resources)
    for namespace in sorted(stack.deny):
        for name, server in sorted(stack.of("Server", namespace).items()):
            access = _spec(server).get("accessPolicy")
            if access not in (None, "deny"):
                report(f"deny namespace {namespace}: Server {name} has accessPolicy {access}, which admits clients no "
                       "AuthorizationPolicy names")
        for name, policy in sorted(stack.of("NetworkPolicy", namespace).items()):
            for index, rule in enumerate(_spec(policy).get("ingress") or []):
                peers = rule.get("from")
                if not peers or any(_everyone(peer) for peer in peers):
                    report(f"deny namespace {namespace}: NetworkPolicy {name} ingress[{index}] admits every pod of the "
                           "cluster (no `from`, or an empty peer or namespaceSelector)")


def _carve(network: Any, hole: Any) -> list[Any]:
    """`network` without `hole`. Two CIDR blocks either nest or do not meet."""
    if hole.version != network.version or not network.overlaps(hole):
        return [network]
    return [] if network.subnet_of(hole) else list(network.address_exclude(hole))


def _share_covered(blocks: Iterable[tuple[str, Iterable[str]]]) -> tuple[dict[int, float], list[str]]:
    """The share of each address family (4, 6) the union of `(cidr, except)` blocks covers, and what did not parse."""
    pieces: dict[int, list[Any]] = {4: [], 6: []}
    bad = []
    for cidr, excepts in blocks:
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
            carved = [network]
            for text in excepts or ():
                hole = ipaddress.ip_network(str(text), strict=False)
                carved = [rest for piece in carved for rest in _carve(piece, hole)]
        except (ValueError, TypeError):
            bad.append(str(cidr))
            continue
        pieces[network.version].extend(carved)
    share = {}
    for version, nets in pieces.items():
        total = sum(n.num_addresses for n in ipaddress.collapse_addresses(nets)) if nets else 0
        share[version] = total / 2 ** (32 if version == 4 else 128)
    return share, bad


def _too_wide(blocks: list[tuple[str, Iterable[str]]]) -> str | None:
    share, bad = _share_covered(blocks)
    wide = [f"{share[v]:.0%} of IPv{v}" for v in (4, 6) if share[v] >= MAX_NETWORK_SHARE]
    if bad:
        return f"{', '.join(bad)} is not a network"
    if wide:
        listed = ", ".join(c + (f" except {list(e)}" if e else "") for c, e in blocks)
        return f"covers {' and '.join(wide)} ({listed})"
    return None


def deny_networks_not_everything(args: StackValidationArgs, report: ReportViolation) -> None:
    """In a deny namespace, what admits clients by address (a NetworkAuthentication: kubelet probes and an unmeshed
    Prometheus; a NetworkPolicy's ingress ipBlocks) covers less than half of each address family, counted over the
    union of its networks minus their exceptions: 0.0.0.0/1 + 128.0.0.0/1 is 0.0.0.0/0."""
    stack = _Stack(args.resources)
    for namespace in sorted(stack.deny):
        for name, authn in sorted(stack.of("NetworkAuthentication", namespace).items()):
            why = _too_wide([(n.get("cidr"), n.get("except") or ()) for n in _spec(authn).get("networks") or []])
            if why:
                report(f"deny namespace {namespace}: NetworkAuthentication {name} {why}; set kubeletNetworks / "
                       "prometheusNetworks to the node and Prometheus networks")
        for name, policy in sorted(stack.of("NetworkPolicy", namespace).items()):
            blocks = [(peer["ipBlock"].get("cidr"), peer["ipBlock"].get("except") or ())
                      for rule in _spec(policy).get("ingress") or [] for peer in rule.get("from") or []
                      if (peer or {}).get("ipBlock")]
            why = _too_wide(blocks) if blocks else None
            if why:
                report(f"deny namespace {namespace}: NetworkPolicy {name} admits ingress from an ipBlock that {why}")


# --- Istio (`mesh: istio`, plan/istio/) -------------------------------------------------------------------------------
# Sources: istio/istio 1.29.6 (7019d6d3608e4995e9a36d2977cfec3a341431cd) [I], istio/api 1.29.6
# (1092f7f897896b437df36d8d0df85728706022f2) [API], the pinned charts under shared/upstream/charts/istio-1.29.6 [IC].
# Every served version of a kind counts (v1, v1beta1; v1alpha3 for networking): a hand edit may use any of them
# (base/files/crd-all.gen.yaml [IC]).
ISTIO_SECURITY = "kubernetes:security.istio.io/"
ISTIO_NETWORKING = "kubernetes:networking.istio.io/"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# meshConfig.rootNamespace, by default istio-system (pkg/config/mesh/mesh.go [I]); the program keeps the default.
ISTIO_ROOT_NAMESPACE = "istio-system"
# istio.io/dry-run: parsed with strconv.ParseBool (pilot/pkg/security/authz/builder/builder.go `isDryRun` [I]).
ISTIO_DRY_RUN = "istio.io/dry-run"
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")  # str(False) is "False" too
# The charts whose Service is istio-csr's: the Service takes the chart's name (istio-csr _helpers.tpl `.Chart.Name`,
# templates/service.yaml: port 443 -> 6443, cert-manager/istio-csr v0.17.0 d8fadec3b039).
ISTIOD_CHART = "istiod"
ISTIO_CSR_CHART = "cert-manager-istio-csr"
ISTIO_CSR_SERVICE_PORT = 443
# What lets a source through without naming an identity one by one: `*` patterns (StringMatcherWithPrefix,
# pilot/pkg/security/authz/matcher/string.go [I]), every account of a namespace, an account in ANY trust domain
# (`serviceAccountRegex`, pilot/pkg/security/authz/model/generator.go [I]), and negations (everyone but a few).
_BROAD_SOURCE_FIELDS = ("namespaces", "serviceAccounts", "notPrincipals", "notNamespaces", "notServiceAccounts")


def _istio(resource_type: str, api: str, kind: str) -> bool:
    return resource_type.startswith(api) and resource_type.endswith(f":{kind}")


def _dry_run(props: Any) -> bool:
    return (_metadata(props).get("annotations") or {}).get(ISTIO_DRY_RUN) in _GO_TRUE


def _allow(spec: Any) -> bool:
    return (spec.get("action") or "ALLOW") == "ALLOW"


def _selector(spec: Any) -> dict[str, Any]:
    return dict((spec.get("selector") or {}).get("matchLabels") or {})


def _exact_principals(source: Any) -> bool:
    """A source that admits only identities named one by one: principals, none a pattern, and nothing broader."""
    principals = source.get("principals") or []
    return bool(principals) and not any("*" in p for p in principals) and \
        not any(field in source for field in _BROAD_SOURCE_FIELDS)


class _IstioStack:
    """The Istio objects of a stack by namespace, and which namespaces are in `deny`.

    The phase is not on an Istio namespace (plan/istio/namespaces.py); it is in its policy, so a namespace is known for
    a deny one by what plan/istio/authorization.py builds only under deny: the namespace-wide allow-nothing
    AuthorizationPolicy (`spec: {}`, enforced: an ALLOW policy without rules matches nothing, builder.go
    `rbacPolicyMatchNever` [I]), a Sidecar selecting a workload (per-workload egress) or a ServiceEntry. A hand edit
    that turns the allow-nothing policy into `rules: [{}]` leaves the Sidecars, so the namespace stays judged. A shard,
    which holds no Namespace, knows its namespaces the same way."""

    def __init__(self, resources: Iterable[Any]):
        self.objects: dict[str, dict[str, list[tuple[str, Any]]]] = {}
        self.deny: set[str] = set()
        self.releases: dict[str, Any] = {}
        for resource in resources:
            props, rtype = resource.props, resource.resource_type
            if rtype == HELM_RELEASE:
                self.releases[props.get("chart")] = props
                continue
            if not rtype.startswith((ISTIO_SECURITY, ISTIO_NETWORKING, "kubernetes:networking.k8s.io/")):
                continue
            kind = rtype.rsplit(":", 1)[-1]
            meta = _metadata(props)
            namespace, spec = meta.get("namespace"), _spec(props)
            self.objects.setdefault(namespace, {}).setdefault(kind, []).append((meta.get("name"), props))
            if kind == "AuthorizationPolicy" and rtype.startswith(ISTIO_SECURITY) and not _selector(spec) \
                    and "rules" not in spec and _allow(spec) and not spec.get("targetRef") \
                    and not spec.get("targetRefs") and not _dry_run(props):
                self.deny.add(namespace)
            if rtype.startswith(ISTIO_NETWORKING) and (kind == "ServiceEntry" or
                                                       (kind == "Sidecar" and spec.get("workloadSelector"))):
                self.deny.add(namespace)

    def of(self, namespace: str, kind: str) -> list[tuple[str, Any]]:
        return sorted(self.objects.get(namespace, {}).get(kind, []), key=lambda item: str(item[0]))

    def isolated(self, namespace: str) -> bool:
        """Whether a NetworkPolicy selects every pod of the namespace for ingress (what guards a port without mTLS)."""
        return any(not _selects_some(p) and "Ingress" in (_spec(p).get("policyTypes") or ["Ingress"])
                   for _, p in self.of(namespace, "NetworkPolicy"))

    def plaintext_ports(self, namespace: str) -> set[str]:
        """Ports a workload-scope PeerAuthentication sets to DISABLE or PERMISSIVE (portLevelMtls, keyed by the target
        port; read from the workload-scope policy only: ComposePeerAuthentication,
        pilot/pkg/security/authn/policy_applier.go [I])."""
        return {str(port) for _, pa in self.of(namespace, "PeerAuthentication") if _selector(_spec(pa))
                for port, setting in (_spec(pa).get("portLevelMtls") or {}).items()
                if (setting or {}).get("mode") in ("DISABLE", "PERMISSIVE")}


def _rule_ports(rule: Any) -> set[str] | None:
    """The ports every `to` of a rule is limited to, or None when some `to` (or the rule) takes every port."""
    tos = rule.get("to") or []
    if not tos:
        return None
    ports: set[str] = set()
    for to in tos:
        listed = (to.get("operation") or {}).get("ports")
        if not listed:
            return None
        ports.update(str(p) for p in listed)
    return ports


def istio_deny_namespaces_closed(args: StackValidationArgs, report: ReportViolation) -> None:
    """In an Istio deny namespace: mTLS is STRICT for the namespace and no workload turns it off, and every enforced
    ALLOW rule names its callers' principals one by one. An ALLOW rule without `from` (`rules: [{}]` is allow-all:
    model.go `New`/`Generate` [I]), or whose source has no principals, admits every caller; `*` admits every
    authenticated one. The one exception is the program's own for proxy-free ports (`meshed: false` services,
    `skipInboundPorts`): a workload PeerAuthentication's portLevelMtls DISABLE on them, and an ALLOW rule limited to
    those ports, where no sidecar can check an identity; allowed only while a NetworkPolicy isolates every pod of the
    namespace, as the program's do (docs/istio-authorization.md, "The mapping")."""
    stack = _IstioStack(args.resources)
    for namespace in sorted(stack.deny):
        namespace_wide = [(name, pa) for name, pa in stack.of(namespace, "PeerAuthentication") if not _selector(_spec(pa))]
        if not namespace_wide:
            report(f"Istio deny namespace {namespace} has no namespace-wide PeerAuthentication: the mesh default, "
                   "PERMISSIVE, accepts plaintext; add one with mtls.mode STRICT")
        for name, pa in namespace_wide:
            mode = (_spec(pa).get("mtls") or {}).get("mode")
            if mode != "STRICT":
                report(f"Istio deny namespace {namespace}: PeerAuthentication {name} is {mode or 'UNSET'}, not STRICT: "
                       "plaintext callers, who carry no identity, get in")
        isolated = stack.isolated(namespace)
        for name, pa in stack.of(namespace, "PeerAuthentication"):
            spec = _spec(pa)
            if not _selector(spec):
                continue
            mode = (spec.get("mtls") or {}).get("mode")
            if mode in ("DISABLE", "PERMISSIVE"):
                report(f"Istio deny namespace {namespace}: PeerAuthentication {name} sets mtls.mode {mode} for the "
                       "workloads it selects: plaintext callers get in")
            loose = sorted(p for p, s in (spec.get("portLevelMtls") or {}).items()
                           if (s or {}).get("mode") in ("DISABLE", "PERMISSIVE"))
            if loose and not isolated:
                report(f"Istio deny namespace {namespace}: PeerAuthentication {name} accepts plaintext on ports "
                       f"{', '.join(loose)} and no NetworkPolicy isolates the namespace's pods for ingress: only "
                       "proxy-free ports may go without mTLS, and only behind the namespace's NetworkPolicies")
        # A workload no enforced ALLOW policy selects admits everyone (authorization_policy.proto, evaluation step 3
        # [API]): the namespace-wide allow-nothing is what makes every workload of the namespace default-deny.
        if not any(not _selector(_spec(p)) and _allow(_spec(p)) and not _dry_run(p)
                   for _, p in stack.of(namespace, "AuthorizationPolicy")):
            report(f"Istio deny namespace {namespace} has no enforced namespace-wide ALLOW AuthorizationPolicy (the "
                   "program's allow-nothing `spec: {}`, not a dry run): a workload no other ALLOW policy selects "
                   "admits every caller")
        exempt = stack.plaintext_ports(namespace) if isolated else set()
        _report_open_rules(stack, namespace, exempt, f"Istio deny namespace {namespace}", report)
    # The root namespace's policies apply to every workload of the mesh (`RootNamespace`, "Policy in the root
    # namespace applies to workloads in all namespaces", and `ListAuthorizationPolicies`,
    # pilot/pkg/model/authorization.go [I]; the program writes none there): one that admits everyone opens every deny namespace, including those of the shards
    # a platform cannot see.
    _report_open_rules(stack, ISTIO_ROOT_NAMESPACE, set(),
                       f"Istio root namespace {ISTIO_ROOT_NAMESPACE} (every workload of the mesh)", report)


def _report_open_rules(stack: _IstioStack, namespace: str, exempt: set[str], where: str, report: ReportViolation) -> None:
    """Every enforced ALLOW rule of the namespace that does not name its callers' principals one by one, unless it is
    limited to `exempt` ports."""
    for name, policy in stack.of(namespace, "AuthorizationPolicy"):
        spec = _spec(policy)
        if not _allow(spec) or _dry_run(policy):
            continue
        for index, rule in enumerate(spec.get("rules") or []):
            sources = [entry.get("source") or {} for entry in rule.get("from") or []]
            if sources and all(_exact_principals(source) for source in sources):
                continue
            ports = _rule_ports(rule)
            if ports is not None and ports <= exempt:
                continue
            what = "has no `from`" if not sources else "has a source that does not name principals one by one"
            report(f"{where}: AuthorizationPolicy {name} rules[{index}] {what}, so it admits callers the service "
                   "graph does not name" + (f" on ports {', '.join(sorted(ports))}" if ports else " on every port"))


def istio_no_wildcard_principals(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No ALLOW AuthorizationPolicy (dry run or not: a dry run is what the next phase enforces) admits identities by
    pattern: a principal with `*` (prefix or suffix match, string.go [I]), `namespaces` (every account of a namespace),
    `serviceAccounts` (that account in any trust domain: `serviceAccountRegex`, generator.go [I]), or a negation
    (everyone but a few). The documented exception is the phase admission of all-authenticated and
    cluster-authenticated namespaces: `principals: ["*"]` alone, in a policy with no selector (any authenticated
    caller of the namespace, as Linkerd's phase of the same name; judged under deny by istio-deny-namespaces-closed)."""
    if not _istio(args.resource_type, ISTIO_SECURITY, "AuthorizationPolicy"):
        return
    spec = _spec(args.props)
    if not _allow(spec):
        return
    meta = _metadata(args.props)
    broad = []
    for index, rule in enumerate(spec.get("rules") or []):
        for entry in rule.get("from") or []:
            source = entry.get("source") or {}
            principals = list(source.get("principals") or [])
            phase_admission = principals == ["*"] and not _selector(spec)
            broad += [f"rules[{index}] principal {p!r}" for p in principals if "*" in p and not phase_admission]
            broad += [f"rules[{index}] {field} {list(source[field])}" for field in _BROAD_SOURCE_FIELDS if field in source]
    if broad:
        report(f"AuthorizationPolicy {meta.get('namespace')}/{meta.get('name')} admits identities by pattern "
               f"({'; '.join(broad)}): list the callers' principals (<trustDomain>/ns/<ns>/sa/<sa>) in the service graph")


def _wide_host(host: str) -> bool:
    """A Sidecar or ServiceEntry host that stands for every host, or every host under a top-level domain."""
    return host == "*" or (host.startswith("*.") and "." not in host[2:])


def istio_deny_egress_closed(args: StackValidationArgs, report: ReportViolation) -> None:
    """In an Istio deny namespace nothing opens egress to everywhere at the mesh layer: no Sidecar with
    `outboundTrafficPolicy: ALLOW_ANY` (it replaces the mesh's mode, pilot/pkg/model/sidecar.go [I]) or an
    egress host `<ns>/*` (every host), and no ServiceEntry for every host of a top-level domain, for half an address
    family or more, or exported beyond its namespace (a Sidecar elsewhere could then name it). REGISTRY_ONLY is no
    firewall (networking/v1alpha3/sidecar.proto [API]), the NetworkPolicies are; this keeps the per-workload egress
    configuration what the graph declares."""
    stack = _IstioStack(args.resources)
    for namespace in sorted(stack.deny):
        for name, sidecar in stack.of(namespace, "Sidecar"):
            spec = _spec(sidecar)
            if (spec.get("outboundTrafficPolicy") or {}).get("mode") == "ALLOW_ANY":
                report(f"Istio deny namespace {namespace}: Sidecar {name} sets outboundTrafficPolicy ALLOW_ANY: its "
                       "workloads reach any host")
            wide = [h for listener in spec.get("egress") or [] for h in listener.get("hosts") or []
                    if h.partition("/")[0] != "~" and _wide_host(h.partition("/")[2])]
            if wide:
                report(f"Istio deny namespace {namespace}: Sidecar {name} names every host ({', '.join(wide)}): list "
                       "the workload's callees and egress hosts")
        for name, entry in stack.of(namespace, "ServiceEntry"):
            spec = _spec(entry)
            wide = [h for h in spec.get("hosts") or [] if _wide_host(h)]
            if wide:
                report(f"Istio deny namespace {namespace}: ServiceEntry {name} is for every host under {', '.join(wide)}")
            addresses = [a for a in spec.get("addresses") or [] if "/" in str(a)]
            why = _too_wide([(a, ()) for a in addresses]) if addresses else None
            if why:
                report(f"Istio deny namespace {namespace}: ServiceEntry {name} {why}")
            exported = spec.get("exportTo")
            if exported is None or any(e not in (".", namespace) for e in exported):
                report(f"Istio deny namespace {namespace}: ServiceEntry {name} is exported to "
                       f"{list(exported) if exported is not None else 'every namespace (the default)'}: export it to "
                       "its own namespace (`exportTo: [\".\"]`)")


def _istiod_values(props: Any) -> dict[str, Any]:
    """The istiod chart's values as its templates see them: `.pilot` merged over the top level
    (templates/zzy_descope_legacy.yaml `mustMergeOverwrite $.Values (index $.Values "pilot")` [IC])."""
    def merge(base: Any, over: Any) -> Any:
        # Props arrive behind pulumi-policy's proxy, which is a mapping but no dict.
        if hasattr(base, "items") and hasattr(over, "items"):
            return {**dict(base.items()), **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over if over is not None else base
    values = props.get("values") or {}
    return merge(values, values.get("pilot") or {})


def istiod_uses_istio_csr_and_registry_only(args: StackValidationArgs, report: ReportViolation) -> None:
    """istiod's own CA is off and every proxy asks istio-csr for its certificate, and every pod of a deny namespace
    runs REGISTRY_ONLY. `ENABLE_CA_SERVER` defaults to true, and so does a value strconv.ParseBool refuses
    (pilot/pkg/features/pilot.go, pkg/env/var.go `BoolVar.Lookup` [I]); with it istiod would mint
    identities from its own self-signed root beside the operator's chain (`maybeCreateCA`, pilot/pkg/bootstrap/
    server.go [I]). `global.caAddress` becomes every proxy's CA_ADDR (files/injection-template.yaml [IC]): anything but
    istio-csr's Service sends the CSRs elsewhere. REGISTRY_ONLY is per Sidecar, the mesh left at ALLOW_ANY (its
    default, pkg/config/mesh/mesh.go [I]) so that injected pods outside the graph keep their destinations: a Sidecar's
    own `outboundTrafficPolicy` replaces the mesh's, and one without it inherits the mesh's
    (pilot/pkg/model/sidecar.go `initSidecarScopeInternalIndexes` [I]); a pod no Sidecar selects gets its namespace's
    selector-less one. So in a deny namespace every Sidecar, and a selector-less one, must say REGISTRY_ONLY (a policy
    without `mode` is the proto3 zero, REGISTRY_ONLY, networking/v1alpha3/sidecar.proto [API]), unless this stack's
    istiod makes the mesh REGISTRY_ONLY: a shard does not see the mesh's mode. A Sidecar that says ALLOW_ANY is
    istio-deny-egress-closed's."""
    stack = _IstioStack(args.resources)
    istiod = stack.releases.get(ISTIOD_CHART)
    values = _istiod_values(istiod) if istiod is not None else {}
    mesh_mode = ((values.get("meshConfig") or {}).get("outboundTrafficPolicy") or {}).get("mode", "ALLOW_ANY")
    if mesh_mode != "REGISTRY_ONLY":
        for namespace in sorted(stack.deny):
            sidecars = stack.of(namespace, "Sidecar")
            inheriting = [str(name) for name, sidecar in sidecars if _spec(sidecar).get("outboundTrafficPolicy") is None]
            if inheriting:
                report(f"Istio deny namespace {namespace}: Sidecar {', '.join(inheriting)} sets no "
                       "outboundTrafficPolicy, so its workloads take the mesh's (ALLOW_ANY by default) and reach any "
                       "host: set `outboundTrafficPolicy: {mode: REGISTRY_ONLY}`")
            if not any(not _spec(sidecar).get("workloadSelector") for _, sidecar in sidecars):
                report(f"Istio deny namespace {namespace} has no selector-less Sidecar: its pods no Sidecar selects "
                       "take the mesh's outbound policy (ALLOW_ANY by default); add one with "
                       "`outboundTrafficPolicy: {mode: REGISTRY_ONLY}`")
    if istiod is None:
        return
    ca_server = (values.get("env") or {}).get("ENABLE_CA_SERVER")
    if str(ca_server) not in _GO_FALSE:
        report(f"istiod runs its own CA (env.ENABLE_CA_SERVER {ca_server!r}): set it to \"false\", so that only "
               "istio-csr, under the mesh's anchors, signs workload certificates")
    csr = stack.releases.get(ISTIO_CSR_CHART)
    wanted = f"{ISTIO_CSR_CHART}.{csr.get('namespace')}.svc:{ISTIO_CSR_SERVICE_PORT}" if csr is not None else None
    address = (values.get("global") or {}).get("caAddress")
    if wanted is None:
        report(f"istiod is deployed without istio-csr ({ISTIO_CSR_CHART}): its proxies have no CA of the mesh's chain")
    elif address != wanted:
        report(f"istiod's global.caAddress is {address!r}, not istio-csr's Service {wanted!r}: the proxies would send "
               "their certificate requests elsewhere")


POLICIES = [
    ResourceValidationPolicy(
        name="workload-namespaces-injected",
        description="Every workload namespace of the mesh is injected with a rollout phase, or declared out of the mesh.",
        validate=workload_namespaces_injected),
    ResourceValidationPolicy(
        name="workload-namespaces-managed",
        description="Every namespace the stack registers carries app.kubernetes.io/part-of=mtls-mesh.",
        validate=workload_namespaces_managed),
    StackValidationPolicy(
        name="deny-namespaces-authorized",
        description="Deny namespaces keep kubelet probes and Prometheus' scraping of /metrics authorized (mesh and "
                    "NetworkPolicy); every AuthorizationPolicy resolves.",
        validate=deny_namespaces_authorized),
    StackValidationPolicy(
        name="deny-namespaces-closed",
        description="In deny namespaces every Server denies by default and no NetworkPolicy admits ingress from every pod.",
        validate=deny_namespaces_closed),
    StackValidationPolicy(
        name="deny-networks-not-everything",
        description="In deny namespaces no NetworkAuthentication or NetworkPolicy ingress ipBlock covers half an "
                    "address family or more, counted over the union of its networks.",
        validate=deny_networks_not_everything),
    ResourceValidationPolicy(
        name="no-wildcard-mesh-identities",
        description="No MeshTLSAuthentication admits a wildcard or namespace-wide identity (`*`, identityRefs of kind "
                    "Namespace or without a name).",
        validate=no_wildcard_mesh_identities),
    ResourceValidationPolicy(
        name="authorizations-name-their-clients",
        description="No AuthorizationPolicy has an empty requiredAuthenticationRefs (it would admit every client).",
        validate=authorizations_name_their_clients),
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
    StackValidationPolicy(
        name="istio-deny-namespaces-closed",
        description="In Istio deny namespaces mTLS is STRICT (plaintext only on proxy-free ports behind NetworkPolicy) "
                    "and every enforced ALLOW rule names its callers' principals one by one.",
        validate=istio_deny_namespaces_closed),
    ResourceValidationPolicy(
        name="istio-no-wildcard-principals",
        description="No Istio ALLOW AuthorizationPolicy admits identities by pattern (`*` principals, namespaces, "
                    "serviceAccounts, negations), but a namespace-wide phase admission `principals: [\"*\"]`.",
        validate=istio_no_wildcard_principals),
    StackValidationPolicy(
        name="istio-deny-egress-closed",
        description="In Istio deny namespaces no Sidecar allows any host (ALLOW_ANY, `*`) and no ServiceEntry is for "
                    "every host or address or exported beyond its namespace.",
        validate=istio_deny_egress_closed),
    StackValidationPolicy(
        name="istiod-uses-istio-csr-and-registry-only",
        description="istiod's CA is off, its proxies' caAddress is istio-csr's Service, and every pod of an Istio "
                    "deny namespace runs REGISTRY_ONLY (its Sidecar's own, or a REGISTRY_ONLY mesh's).",
        validate=istiod_uses_istio_csr_and_registry_only),
]
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY
