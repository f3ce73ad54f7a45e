"""The compile step: one stack's settings (with its service graph) -> every object the program manages, as plain data.

`compile_mesh(settings)` returns a `MeshPlan`: each Kubernetes object as the dict the provider receives, grouped by
owner (the platform: namespaces, cert-manager's issuers and bundles, Linkerd's webhook PKI, Helm values, alerts,
the verification canary; each workload namespace: its Namespace, its policy objects, its certificates and issuer),
the Vault declarations the settings fix (PKI roles, login policies), and the reports read back from the objects
(the access and egress matrices). It imports no Pulumi: registration (`__main__.py` and the components) hands the
plan to Pulumi, and what else needs the objects (the exported matrices, the alerts' expected plaintext names,
`python -m discover`, tests/test_plan.py) reads the same plan instead of building objects again.

The stack's `mesh` setting is the switch: with `linkerd` (the default) the Linkerd plan (plan/linkerd/) fills
`MeshPlan.linkerd`, exactly as before the switch; with `istio` the Istio plan (plan/istio/) fills `MeshPlan.istio`:
its control plane's values, its trust objects under the same anchors, its policy, namespaces, alerts, checks and
Vault login. Everything else (graph, anchors, workload certificates, Vault mounts, matrices) is the same for both.

A few values exist only once a provider has made them: the trust anchors' and workload roots' certificates, the
certificates the program signs without Vault, the token reviewer's JWT. The plan does not guess them: it says which
objects need them (`CertificatesPlan.anchors`, `NamespacePlan.signed_services`, `AlertsPlan`'s expiry groups), and
registration builds those few objects with the provider's values.

Checks that need the objects run here, on the compiled plan (`plan_problems`): `compile_mesh` raises them as one
`SettingsError`, before anything is registered, exactly as the settings' own problems are raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Mapping

from plan.linkerd.alerts import mesh_rule_groups, pod_monitor
from plan.linkerd.authorization import access_matrix, authorization_objects, egress_matrix
from plan.linkerd.cluster import (MulticlusterPlan, build_cluster, cluster_problems, cluster_view, multicluster_plan,
                                  remote_identities, remote_names)
from plan.linkerd.multicluster_network import workload_policies
from plan.linkerd.identity import identity_issuer_certificate, identity_issuers, trust_bundle
from plan.cert_manager import (cert_manager_values, token_request_rbac,
                           trust_manager_values, workload_certificate, workload_issuer,
                           workload_secret_name, workload_trust_bundle)
from plan.collisions import object_name_clashes, oversized_objects
from read.durations import Duration
from read.errors import Problem, SettingsError
from read.graph import Service, collector_paused, mesh_identity
from plan.linkerd.control_plane import (ROTATION_RESTART as LINKERD_ROTATION_RESTART, crds_values, control_plane_values,
                                        viz_values, webhook_ca_objects, webhook_certificate, webhooks)
from plan.linkerd.namespaces import LINKERD_NAMESPACE, linkerd_namespace_object, viz_namespace_object, workload_namespace_object
from plan.objects import document, group_manifest
from read.names import workload_root_common_name
from read.settings import Settings
from plan.trust import anchor_certificate_args, workload_certificate_args, workload_request_args
from plan.preview_identity import PreviewPlan, preview_plan, vault_preview_policy, vault_preview_policy_name
from plan.vault_pki import identity_issuer_policy, namespace_policy, token_reviewer_objects, workload_role_args
from plan.linkerd.verification import check_jobs, namespace_object, on_demand_cronjobs, policy_objects, verification_matrix
from plan.verification import ALLOWED as VERIFY_ALLOWED, canary_objects, service_accounts, verification_graph
from plan.istio import alerts as istio_alerts, authorization as istio_authorization, namespaces as istio_namespaces
from plan.istio import verification as istio_verification
from plan.istio.authorization import MESH_CONFIG as ISTIO_MESH_CONFIG, PLACEMENT as ISTIO_PLACEMENT
from plan.istio.control_plane import (ROTATION_RESTART as ISTIO_ROTATION_RESTART, base_values, istio_csr_values,
                                      istio_settings, istiod_certificate, istiod_values, root_cert_check)
from plan.istio.names import (ISTIO_CHART_VERSION, ISTIO_CSR_CHART_VERSION, ISTIO_CSR_REPOSITORY, ISTIO_NAMESPACE,
                              ISTIO_REPOSITORY)
from plan.istio.trust import (istio_ca_auth_role, istio_ca_certificate, istio_ca_issuer, istio_ca_policy,
                              istio_roots_bundle, signer_rbac, signers)

Object = dict[str, Any]


@dataclass(frozen=True)
class NamespacePlan:
    """One namespace of the service graph and what the program puts in it."""

    name: str
    # The Namespace object; `adopted`: it exists already and is applied as a NamespacePatch (server-side apply).
    namespace: Object
    adopted: bool
    # Servers, MeshTLS/NetworkAuthentications, AuthorizationPolicies, routes, EgressNetworks, NetworkPolicies; each
    # written once as compact JSON (objects.document): the sizes the etcd check measures, and the ConfigGroup manifest.
    policy: tuple[Object, ...] = ()
    policy_sizes: tuple[int, ...] = ()
    policy_manifest: str = ""
    # With Vault: the namespace's workload Issuer, the account and RBAC its Vault login needs, its Certificates.
    issuer: Object | None = None
    issuer_rbac: tuple[Object, ...] = ()
    certificates: tuple[Object, ...] = ()
    # Without Vault: the services whose certificate the program signs; their Secrets carry the provider's PEMs.
    signed_services: tuple[Service, ...] = ()

    def objects(self) -> Iterator[Object]:
        yield self.namespace
        yield from self.policy
        yield from self.issuer_rbac
        if self.issuer is not None:
            yield self.issuer
        yield from self.certificates


@dataclass(frozen=True)
class CertificatesPlan:
    """cert-manager and trust-manager: their Helm values (None: installed elsewhere), the identity issuers, the
    Linkerd identity issuer's Certificate and the trust bundles. `anchors`: the anchor ids whose roots registration
    publishes as ConfigMaps (and, without Vault, whose key it hands the identity issuer), once a provider made them."""

    namespace: str
    chart_version: str
    trust_manager_chart_version: str
    cert_manager_values: Object | None
    trust_manager_values: Object | None
    anchors: tuple[str, ...]
    issuing_anchor: str
    bundle_anchors: tuple[str, ...]
    # The Linkerd identity issuer's chain; empty/None with another mesh (which has its own, e.g. IstioPlan).
    identity_issuers: Mapping[str, Object]
    identity_rbac: tuple[Object, ...]
    identity_issuer_certificate: Object | None
    trust_bundle: Object | None
    workload_trust_bundle: Object | None

    def objects(self) -> Iterator[Object]:
        yield from self.identity_rbac
        yield from self.identity_issuers.values()
        if self.identity_issuer_certificate is not None:
            yield self.identity_issuer_certificate
        if self.trust_bundle is not None:
            yield self.trust_bundle
        if self.workload_trust_bundle is not None:
            yield self.workload_trust_bundle


@dataclass(frozen=True)
class LinkerdPlan:
    """The Linkerd charts (version, repository, values) and the webhooks' own PKI (per namespace: self-signer, CA
    Certificate, CA Issuer; then one Certificate per webhook)."""

    chart_version: str
    repository: str
    high_availability: bool
    crds_values: Object
    control_plane_values: Object
    viz_values: Object | None
    cni: bool
    webhook_cas: Mapping[str, tuple[Object, Object, Object]]
    webhook_certificates: Mapping[str, Object]

    def objects(self) -> Iterator[Object]:
        for ca in self.webhook_cas.values():
            yield from ca
        yield from self.webhook_certificates.values()


@dataclass(frozen=True)
class IstioPlan:
    """The Istio charts (versions, repositories, values: base, istio-csr, istiod) and Istio's trust chain under the
    mesh anchors (plan/istio/trust.py): the signers of the Istio CA (with Vault their login's RBAC), the CA and its
    `ca:` Issuer istio-csr names, and the Bundle of the roots istio-csr pins. `anchor_keys`: without Vault, the
    anchors whose key registration hands the signers in istio-system (istio_anchor_secret)."""

    chart_version: str
    repository: str
    istio_csr_chart_version: str
    istio_csr_repository: str
    high_availability: bool
    namespace: Object
    base_values: Object
    istio_csr_values: Object
    istiod_values: Object
    signer_rbac: tuple[Object, ...]
    signers: Mapping[str, Object]
    ca_certificate: Object
    ca_issuer: Object
    roots_bundle: Object
    anchor_keys: tuple[str, ...]
    # What istiod's release waits for besides istio-csr's: its serving certificate and the root ConfigMap check.
    istiod_certificate: Object
    root_cert_check: tuple[Object, ...]

    def objects(self) -> Iterator[Object]:
        yield self.namespace
        yield from self.signer_rbac
        yield from self.signers.values()
        yield self.ca_certificate
        yield self.ca_issuer
        yield self.roots_bundle
        yield self.istiod_certificate
        yield from self.root_cert_check


@dataclass(frozen=True)
class SelfSignedPlan:
    """Without Vault: what pulumi-tls makes (trust.py). Per anchor a mesh root and a workload root, and a certificate
    signed by the issuing anchor's workload root for each certificate service (by service key, graph order)."""

    anchors: tuple[str, ...]
    issuing_anchor: str
    protect: bool
    anchor_args: Mapping[str, Any]
    workload_root_args: Mapping[str, Any]
    workload_requests: Mapping[str, Mapping[str, Any]]
    workload_certificate_args: Mapping[str, Any]
    # Multi-cluster (docs/multicluster.md, "Trust across clusters"): a secondary cluster's stack makes no mesh root and
    # reads the one its root-owning stack (this name) exports; the root-owning stack exports its roots' keys, as a
    # secret, for them (`shares_root`). Both empty/False for a single-cluster stack.
    mesh_root_stack: str = ""
    shares_root: bool = False


@dataclass(frozen=True)
class VerificationPlan:
    """The post-deploy checks (verification.py): canary namespace, accounts, policy, canary, Jobs and CronJobs."""

    namespace: Object
    service_accounts: tuple[Object, ...]
    policy: tuple[Object, ...]
    canary: tuple[Object, ...]
    jobs: tuple[Object, ...]
    cronjobs: tuple[Object, ...]
    matrix: Mapping[str, Any]

    def objects(self) -> Iterator[Object]:
        yield self.namespace
        for part in (self.service_accounts, self.policy, self.canary, self.jobs, self.cronjobs):
            yield from part


@dataclass(frozen=True)
class AlertsPlan:
    """Every rule group known from the settings, and the PodMonitor. The expiry groups of the anchors (and, without
    Vault, of the certificates the program signs) are written at registration from the certificates themselves."""

    labels: Mapping[str, str]
    rule_groups: tuple[Object, ...]
    pod_monitor: Object
    # What the expiry groups written at registration need.
    anchor_validity: Duration
    workload_renew_before: Duration
    intermediate_validity: Duration | None
    # Istio: istiod's and istio-csr's ServiceMonitors (Linkerd's control plane is scraped by its PodMonitor).
    service_monitors: tuple[Object, ...] = ()
    # Labels every alert of the stack carries besides its own: a cluster stack's `cluster`, so that alerts of the
    # environment's clusters stay apart wherever they are routed or federated (with_rule_labels).
    rule_labels: Mapping[str, str] = field(default_factory=dict)

    def objects(self) -> Iterator[Object]:
        yield self.pod_monitor
        yield from self.service_monitors


@dataclass(frozen=True)
class VaultLogin:
    """A Kubernetes auth login of one issuing namespace's issuer account, and the policy its tokens carry."""

    role: str
    namespace: str
    policy: str
    # What names its Vault resources (`<component>-<name>-policy`, `-login`): the mesh's CA login is `identity`
    # (Linkerd's identity issuer) or `istio` (the Istio CA's signers).
    name: str = "identity"


@dataclass(frozen=True)
class VaultPlan:
    """What the settings fix in Vault: per anchor in use a root, an intermediate (its mount's max TTL: the identity
    issuer's duration) and a workload root; the logins (identity issuer, then one per certificate namespace); the PKI
    role of each certificate namespace; and (external token review) the reviewer's Kubernetes objects."""

    anchors: tuple[str, ...]
    protect: bool
    intermediate_max_ttl_seconds: int
    identity_login: VaultLogin
    namespace_logins: Mapping[str, VaultLogin]
    workload_roles: Mapping[str, Mapping[str, Any]]
    token_reviewer: tuple[Object, ...] = ()
    # The policy of the preview token (plan/preview_identity.py): its name and text.
    preview_policy: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class MeshPlan:
    """Everything one stack's settings compile to. `namespaces` follows the graph's order."""

    stack: str
    # Linkerd's namespace (None with istio: IstioPlan.namespace is istio-system).
    linkerd_namespace: Object | None
    viz_namespace: Object | None
    namespaces: Mapping[str, NamespacePlan]
    certificates: CertificatesPlan
    # Exactly one of the two, by the `mesh` setting.
    linkerd: LinkerdPlan | None
    vault: VaultPlan | None
    self_signed: SelfSignedPlan | None
    verification: VerificationPlan | None
    alerts: AlertsPlan | None
    # `<namespace>/<service>:<port>` -> who may call it (the graph's services, then the canary's), read from the objects.
    access_matrix: Mapping[str, Any] = field(default_factory=dict)
    egress_matrix: Mapping[str, Any] = field(default_factory=dict)
    # The export `inboundPolicies`: each meshed namespace's rollout phase.
    inbound_policies: Mapping[str, str] = field(default_factory=dict)
    # Who a pull request's preview runs as: the admission policy that keeps it to dry-runs, then the RBAC that lets
    # its dry-runs reach admission (plan/preview_identity.py), built from the other objects.
    preview: PreviewPlan | None = None
    istio: IstioPlan | None = None
    # A cluster of a multi-cluster Linkerd environment (settings `cluster`): what registration needs for its links
    # (plan/linkerd/cluster.py); None for a single-cluster stack.
    multicluster: MulticlusterPlan | None = None

    @property
    def mesh(self) -> str:
        return "istio" if self.istio is not None else "linkerd"

    @property
    def control_plane_namespace(self) -> Object:
        """The mesh control plane's Namespace object (linkerd, or istio-system)."""
        if self.istio is not None:
            return self.istio.namespace
        assert self.linkerd_namespace is not None
        return self.linkerd_namespace

    @property
    def rotation_restart(self) -> str:
        """What an operator restarts after each anchor-rotation phase (components/rotation.py next_step)."""
        return ISTIO_ROTATION_RESTART if self.istio is not None else LINKERD_ROTATION_RESTART

    @property
    def anchor_key_namespace(self) -> str:
        """Without Vault: where the anchors' keys are held for the mesh CA's signer."""
        return ISTIO_NAMESPACE if self.istio is not None else LINKERD_NAMESPACE

    def control_plane_contract(self) -> dict[str, Any]:
        """What every shard's policy objects assume of the platform's mesh (plan/shards.py): Linkerd's as it always
        was (its chart, so its policy CRDs, and the trust domain its identities carry); Istio's likewise, with the
        mesh named, and where istiod and istio-csr run, which the shards' NetworkPolicies let sidecars reach."""
        if self.istio is not None:
            return {"mesh": "istio", "istioChartVersion": self.istio.chart_version,
                    "identityTrustDomain": self.istio.istiod_values["meshConfig"]["trustDomain"],
                    "controlPlaneNamespaces": {"istiod": ISTIO_PLACEMENT.istiod_namespace,
                                               "istioCsr": ISTIO_PLACEMENT.istio_csr_namespace}}
        assert self.linkerd is not None
        return {"linkerdChartVersion": self.linkerd.chart_version,
                "identityTrustDomain": self.linkerd.control_plane_values.get("identityTrustDomain")}

    def certificate_namespaces(self) -> dict[str, NamespacePlan]:
        """The namespaces with certificate services, sorted (their issuers and Certificates, or signed services)."""
        return {name: ns for name, ns in sorted(self.namespaces.items()) if ns.certificates or ns.signed_services}

    def policy_objects(self) -> list[Object]:
        """Every graph namespace's policy objects, namespace by namespace."""
        return [obj for ns in self.namespaces.values() for obj in ns.policy]

    def objects(self) -> list[Object]:
        """Every Kubernetes object whose whole content the settings fix (not the few a provider's values fill)."""
        found = [*([self.linkerd_namespace] if self.linkerd_namespace else []),
                 *([self.viz_namespace] if self.viz_namespace else [])]
        for ns in self.namespaces.values():
            found += ns.objects()
        for part in (self.certificates, self.linkerd, self.istio, self.verification, self.alerts):
            if part is not None:
                found += part.objects()
        if self.vault is not None:
            found += self.vault.token_reviewer
        if self.preview is not None:
            found += [*self.preview.admission, *self.preview.access]
        return found




def _is_istio(settings: Settings) -> bool:
    return settings.mesh == "istio"


def _namespace_plans(settings: Settings, remote: Mapping[tuple[str, str], frozenset[str]] | None = None,
                     cross_cluster: Iterable[Object] = ()) -> dict[str, NamespacePlan]:
    """`cross_cluster`: a cluster stack's NetworkPolicies for cross-cluster traffic (multicluster_network), registered
    with their namespaces' other policy objects."""
    graph, vault = settings.graph, settings.vault
    policy: dict[str, list[Object]] = {}
    istio = _is_istio(settings)
    objects_of_graph = (istio_authorization.authorization_objects(settings, ISTIO_PLACEMENT) if istio
                        else authorization_objects(settings, remote))
    for obj in [*objects_of_graph, *cross_cluster]:
        policy.setdefault(obj["metadata"]["namespace"], []).append(obj)
    certificate_services = graph.certificate_services
    plans = {}
    for namespace in graph.namespaces.values():
        shard = namespace.shard if settings.policy_shards else None
        obj = (istio_namespaces.workload_namespace_object(namespace, shard) if istio
               else workload_namespace_object(namespace, graph, settings.rollout, shard))
        adopted = namespace.name in settings.adopt_namespaces
        if adopted:
            # Server-side apply takes over just these labels and annotations from whoever set them before.
            obj["metadata"].setdefault("annotations", {})["pulumi.com/patchForce"] = "true"
        services = certificate_services.get(namespace.name, ())
        issuing = bool(services) and vault is not None
        objects = tuple(policy.get(namespace.name, ()))
        documents = list(map(document, objects))
        plans[namespace.name] = NamespacePlan(
            name=namespace.name, namespace=obj, adopted=adopted, policy=objects,
            policy_sizes=tuple(map(len, documents)), policy_manifest=group_manifest(documents=documents),
            issuer=workload_issuer(settings, namespace.name) if issuing else None,
            issuer_rbac=tuple(token_request_rbac(namespace.name, settings.cert_manager)) if issuing else (),
            certificates=tuple(workload_certificate(settings, s) for s in services) if issuing else (),
            signed_services=tuple(services) if vault is None else ())
    return plans


def _certificates_plan(settings: Settings) -> CertificatesPlan:
    cm = settings.cert_manager
    istio = _is_istio(settings)
    return CertificatesPlan(
        namespace=cm.namespace, chart_version=cm.chart_version, trust_manager_chart_version=cm.trust_manager_chart_version,
        cert_manager_values=cert_manager_values(settings.monitoring.labels if settings.monitoring.enabled else None)
        if cm.install else None,
        trust_manager_values=trust_manager_values(cm.namespace) if cm.install else None,
        anchors=settings.pki.rotation.anchors, issuing_anchor=settings.pki.rotation.issuing_anchor,
        bundle_anchors=settings.pki.rotation.bundle_anchors,
        identity_issuers=identity_issuers(settings) if not istio else {},
        identity_rbac=tuple(token_request_rbac(LINKERD_NAMESPACE, cm)) if settings.vault is not None and not istio else (),
        identity_issuer_certificate=identity_issuer_certificate(settings) if not istio else None,
        trust_bundle=trust_bundle(settings) if not istio else None,
        workload_trust_bundle=workload_trust_bundle(settings) if settings.graph.certificate_services else None)


def _linkerd_plan(settings: Settings) -> LinkerdPlan:
    wanted = webhooks(settings)
    linkerd = settings.linkerd
    return LinkerdPlan(
        chart_version=linkerd.chart_version, repository=linkerd.repository, high_availability=linkerd.high_availability,
        crds_values=crds_values(), control_plane_values=control_plane_values(settings),
        viz_values=viz_values(settings) if settings.linkerd.viz else None, cni=settings.linkerd.cni,
        webhook_cas={ns: tuple(webhook_ca_objects(ns)) for ns in sorted({w.namespace for w in wanted})},
        webhook_certificates={w.certificate: webhook_certificate(w) for w in wanted})


def _istio_plan(settings: Settings) -> IstioPlan:
    choices = istio_settings(settings)
    istiod = istiod_values(settings, choices)
    # ALLOW_ANY mesh-wide, said explicitly; the deny namespaces' Sidecars carry REGISTRY_ONLY (authorization.py).
    istiod = {**istiod, "meshConfig": {**istiod["meshConfig"], **ISTIO_MESH_CONFIG}}
    return IstioPlan(
        chart_version=ISTIO_CHART_VERSION, repository=ISTIO_REPOSITORY,
        istio_csr_chart_version=ISTIO_CSR_CHART_VERSION, istio_csr_repository=ISTIO_CSR_REPOSITORY,
        high_availability=choices.high_availability, namespace=istio_namespaces.control_plane_namespace_object(),
        base_values=base_values(settings, choices), istio_csr_values=istio_csr_values(settings, choices),
        istiod_values=istiod, signer_rbac=tuple(signer_rbac(settings)), signers=signers(settings),
        ca_certificate=istio_ca_certificate(settings), ca_issuer=istio_ca_issuer(), roots_bundle=istio_roots_bundle(settings),
        anchor_keys=settings.pki.rotation.anchors if settings.vault is None else (),
        istiod_certificate=istiod_certificate(settings), root_cert_check=tuple(root_cert_check(settings)))


def _vault_plan(settings: Settings) -> VaultPlan | None:
    vault = settings.vault
    if vault is None:
        return None
    rotation = settings.pki.rotation
    namespaces = list(settings.graph.certificate_services)
    external_review = vault.kubernetes_auth_mode == "external" and vault.create_kubernetes_auth
    return VaultPlan(
        anchors=rotation.anchors, protect=settings.pki.protect,
        intermediate_max_ttl_seconds=settings.pki.issuer_duration.seconds,
        identity_login=(VaultLogin(istio_ca_auth_role(vault), ISTIO_NAMESPACE, istio_ca_policy(settings), name="istio")
                        if _is_istio(settings) else
                        VaultLogin(vault.identity_auth_role, LINKERD_NAMESPACE, identity_issuer_policy(settings))),
        namespace_logins={ns: VaultLogin(vault.namespace_auth_role(ns), ns, namespace_policy(vault, rotation, ns))
                          for ns in namespaces},
        workload_roles={ns: workload_role_args(settings, ns) for ns in namespaces},
        token_reviewer=tuple(token_reviewer_objects()) if external_review else (),
        preview_policy=(vault_preview_policy_name(vault), vault_preview_policy(vault, rotation.anchors)))


def _self_signed_plan(settings: Settings) -> SelfSignedPlan | None:
    if settings.vault is not None:
        return None
    return SelfSignedPlan(
        anchors=settings.pki.rotation.anchors, issuing_anchor=settings.pki.rotation.issuing_anchor,
        protect=settings.pki.protect, anchor_args=anchor_certificate_args(settings),
        workload_root_args=anchor_certificate_args(settings, workload_root_common_name(settings.trust_domain)),
        workload_requests={s.key: workload_request_args(settings, s)
                           for services in settings.graph.certificate_services.values() for s in services},
        workload_certificate_args=workload_certificate_args(settings),
        mesh_root_stack=settings.multicluster.mesh_root_stack if settings.multicluster is not None else "",
        shares_root=settings.multicluster is not None and settings.multicluster.owns_mesh_root)


def _canary_remote_names(settings: Settings, cluster) -> dict[str, list[str]]:
    """Who else the canary's verify-allowed identity stands for in a cluster stack: the verify-allowed of every peer
    that links here, whose cross-link checks call this canary with that same identity (equal trust domains)."""
    allowed = verification_graph().services[VERIFY_ALLOWED]
    identity = mesh_identity(allowed.service_account, allowed.namespace, settings.trust_domain)
    return {identity: sorted(f"{allowed.namespace}/{VERIFY_ALLOWED}@{peer.name}" for peer in cluster.linked_by)}


def _verification_plan(settings: Settings, canary_names: Mapping[str, list[str]] | None = None) -> VerificationPlan | None:
    if not settings.verification.enabled:
        return None
    if _is_istio(settings):
        # The same canary, accounts and clients; Istio's namespace label, policy, Jobs and matrix rows.
        return VerificationPlan(
            namespace=istio_verification.namespace_object(), service_accounts=tuple(service_accounts()),
            policy=tuple(istio_verification.policy_objects(settings)),
            canary=tuple(canary_objects(settings.verification.server_image)),
            jobs=tuple(istio_verification.check_jobs(settings)),
            cronjobs=tuple(istio_verification.on_demand_cronjobs(settings)),
            matrix=istio_verification.verification_matrix(settings))
    return VerificationPlan(
        namespace=namespace_object(settings.rollout.default_policy), service_accounts=tuple(service_accounts()),
        policy=tuple(policy_objects(settings)), canary=tuple(canary_objects(settings.verification.server_image)),
        jobs=tuple(check_jobs(settings)), cronjobs=tuple(on_demand_cronjobs(settings)),
        matrix=verification_matrix(settings, canary_names))


def with_rule_labels(group: Object, labels: Mapping[str, str]) -> Object:
    """A rule group whose every alert also carries `labels` (an alert's own label of the same name wins)."""
    if not labels:
        return group
    return {**group, "rules": [{**rule, "labels": {**labels, **rule.get("labels", {})}} if "alert" in rule else rule
                               for rule in group["rules"]]}


def _alerts_plan(settings: Settings, policy: list[Object]) -> AlertsPlan | None:
    plan = _mesh_alerts_plan(settings, policy)
    if plan is None or settings.multicluster is None:
        return plan
    rule_labels = {"cluster": settings.multicluster.cluster}
    return replace(plan, rule_labels=rule_labels,
                   rule_groups=tuple(with_rule_labels(group, rule_labels) for group in plan.rule_groups))


def _mesh_alerts_plan(settings: Settings, policy: list[Object]) -> AlertsPlan | None:
    if not settings.monitoring.enabled:
        return None
    labels = settings.monitoring.labels
    if _is_istio(settings):
        return AlertsPlan(labels=labels, rule_groups=tuple(istio_alerts.istio_rule_groups(settings)),
                          pod_monitor=istio_alerts.pod_monitor(settings, labels),
                          anchor_validity=settings.pki.anchor_validity,
                          workload_renew_before=settings.pki.workload_renew_before,
                          intermediate_validity=settings.vault.intermediate_ttl if settings.vault is not None else None,
                          service_monitors=tuple(istio_alerts.service_monitors(labels)))
    return AlertsPlan(labels=labels, rule_groups=tuple(mesh_rule_groups(settings, policy)),
                      pod_monitor=pod_monitor(settings, labels), anchor_validity=settings.pki.anchor_validity,
                      workload_renew_before=settings.pki.workload_renew_before,
                      intermediate_validity=settings.vault.intermediate_ttl if settings.vault is not None else None)


def build_plan(settings: Settings) -> MeshPlan:
    """The plan, unchecked (compile_mesh checks it). A cluster stack of a multi-cluster environment compiles the graph
    as its cluster runs it (plan/linkerd/cluster.py), its exports' cross-cluster callers authorized on the callee's
    side; its builders' refusals (a gateway export that would need per-caller policy, ...) are raised first."""
    remote: dict[tuple[str, str], frozenset[str]] = {}
    names: dict[str, list[str]] = {}
    cross_cluster: list[Object] = []
    multicluster = None
    if settings.multicluster is not None and not _is_istio(settings):
        cluster = build_cluster(settings)
        problems = cluster_problems(settings, cluster)
        if problems:
            raise SettingsError(problems, settings.stack)
        remote, names = remote_identities(settings, cluster), remote_names(settings, cluster)
        multicluster = multicluster_plan(settings, cluster)
        cross_cluster = workload_policies(settings, cluster)
        settings = replace(settings, graph=cluster_view(settings.graph, cluster.name))
    namespaces = _namespace_plans(settings, remote, cross_cluster)
    policy = [obj for ns in namespaces.values() for obj in ns.policy]
    verification = _verification_plan(settings, _canary_remote_names(settings, cluster) if multicluster else None)
    istio = _is_istio(settings)
    matrix = (istio_authorization.access_matrix(policy, settings.graph, settings.trust_domain) if istio
              else access_matrix(policy, settings.graph, settings.trust_domain, settings.policy.kubelet_networks,
                                 names))
    if verification is not None:
        matrix.update(verification.matrix)
    plan = MeshPlan(
        stack=settings.stack,
        linkerd_namespace=linkerd_namespace_object() if not istio else None,
        viz_namespace=viz_namespace_object() if settings.linkerd.viz and not istio else None,
        namespaces=namespaces,
        certificates=_certificates_plan(settings),
        linkerd=_linkerd_plan(settings) if not istio else None,
        istio=_istio_plan(settings) if istio else None,
        vault=_vault_plan(settings),
        self_signed=_self_signed_plan(settings),
        verification=verification,
        alerts=_alerts_plan(settings, policy),
        access_matrix=matrix,
        egress_matrix=(istio_authorization.egress_matrix(policy, settings.graph) if istio
                       else egress_matrix(policy, settings.graph)),
        inbound_policies={ns.name: settings.rollout.policy_for(ns.name) for ns in settings.graph.meshed_namespaces},
        multicluster=multicluster,
    )
    return replace(plan, preview=preview_plan(settings.preview_identity, plan))


def plan_problems(settings: Settings, plan: MeshPlan) -> list[Problem]:
    """What only the compiled objects show (collisions.py), among the objects whose names and size the graph makes:
    two objects of one kind and name in one namespace, and an object larger than etcd stores. Each namespace's Secrets
    the program fills itself count by name."""
    objects: list[Object] = []
    sizes: list[int] = []
    for ns in plan.namespaces.values():
        objects += ns.policy
        sizes += ns.policy_sizes
        others = [*ns.certificates, *({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": ns.name, "name": name}}
                                      for name in _signed_secret_names(ns))]
        objects += others
        sizes += (len(document(o)) for o in others)
    return [*object_name_clashes(settings.graph, objects), *oversized_objects(settings.graph, objects, sizes=sizes)]


def _signed_secret_names(ns: NamespacePlan) -> list[str]:
    return [workload_secret_name(s) for s in ns.signed_services]


@collector_paused()  # millions of acyclic dicts: the collector's passes over them grew faster than the graph
def compile_mesh(settings: Settings) -> MeshPlan:
    """The stack's plan, or one SettingsError listing every problem the compiled objects show."""
    plan = build_plan(settings)
    problems = plan_problems(settings, plan)
    if problems:
        raise SettingsError(problems, settings.stack)
    return plan
