"""mtls-mesh: wiring only. Settings are read and validated once, then each component gets what it needs."""

import gc

import pulumi

from components.alerts import MeshAlerts, MeshAlertsArgs
from components.authorization import MeshAuthorization, MeshAuthorizationArgs
from components.cert_manager import AnchorMaterial, CertManager, CertManagerArgs
from components.linkerd import LinkerdControlPlane, LinkerdControlPlaneArgs
from components.namespaces import MeshNamespaces, MeshNamespacesArgs
from components.providers import kubernetes_provider, vault_provider
from components.rotation import check_rotation_step, read_previous_rotation, rotation_status
from components.settings import load_settings, read_stack_config
from components.trust import SelfSignedAnchors, SelfSignedWorkloadCertificates
from components.vault_pki import VaultPki, VaultPkiArgs, VaultTokenReviewer
from components.verification import MeshVerification, MeshVerificationArgs

# A Pulumi program is a short-lived process that builds one large object graph. The cyclic collector's repeated scans
# of it cost about a third of the run at a few thousand services and free almost nothing (benchmarks/run.py), so it
# runs rarely; reference counting still frees everything else at once.
gc.freeze()
gc.set_threshold(200_000, 100, 10_000)

config, secret_keys = read_stack_config()
settings = load_settings(config, pulumi.get_stack(), secret_keys=secret_keys,
                         updating=not pulumi.runtime.is_dry_run())

# A rotation phase must follow the state this stack last applied (its own trustRotation output), checked before any
# resource is registered, so an out-of-order phase changes nothing.
check_rotation_step(read_previous_rotation(), settings.pki.rotation, settings.stack, settings.pki.allow_rotation_jump)

kubernetes = kubernetes_provider("kubernetes", settings.kubernetes)
on_cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes})

namespaces = MeshNamespaces(
    "mesh",
    MeshNamespacesArgs(graph=settings.graph, rollout=settings.rollout, adopt=settings.adopt_namespaces,
                       viz=settings.linkerd.viz),
    on_cluster,
)

workload_tls = {}
if settings.vault is not None:
    reviewer = None
    if settings.vault.kubernetes_auth_mode == "external" and settings.vault.create_kubernetes_auth:
        reviewer = VaultTokenReviewer("vault-token-reviewer", on_cluster)
    pki = VaultPki("pki", VaultPkiArgs(settings, reviewer_token=reviewer.token if reviewer else None,
                                       reviewer_ready=(reviewer.binding,) if reviewer else ()),
                   pulumi.ResourceOptions(providers={"vault": vault_provider("vault", settings.vault)}))
    anchors = {a: AnchorMaterial(v.root_certificate_pem, v.workload_root_pem, ready=v.ready,
                                 workload_ready=v.workload_ready) for a, v in pki.anchors.items()}
    identity_login_ready, namespace_login_ready = pki.identity_login_ready, pki.namespace_login_ready
    intermediates = {a: v.intermediate_pem for a, v in pki.anchors.items() if v.intermediate_pem is not None}
else:
    self_signed = SelfSignedAnchors("anchor", settings)
    anchors = {a: AnchorMaterial(v.certificate_pem, v.workload_root_pem, v.private_key_pem)
               for a, v in self_signed.anchors.items()}
    identity_login_ready, namespace_login_ready = [], {}
    intermediates = {}
    if settings.graph.certificate_services:
        signed = SelfSignedWorkloadCertificates(
            "workload-tls", settings, self_signed.anchors[settings.pki.rotation.issuing_anchor])
        workload_tls = signed.certificates

certificates = CertManager(
    "certs",
    CertManagerArgs(settings=settings, anchors=anchors, namespaces=namespaces.namespaces,
                    linkerd_namespace=namespaces.linkerd, identity_login_ready=identity_login_ready,
                    namespace_login_ready=namespace_login_ready, workload_tls=workload_tls),
    on_cluster,
)

linkerd = LinkerdControlPlane(
    "linkerd",
    LinkerdControlPlaneArgs(settings=settings, linkerd_namespace=namespaces.linkerd, viz_namespace=namespaces.viz,
                            cert_manager_ready=certificates.installed,
                            identity_ready=[certificates.identity_issuer, certificates.trust_bundle]),
    on_cluster,
)

authorization = MeshAuthorization(
    "authz",
    MeshAuthorizationArgs(settings=settings, namespaces=namespaces.namespaces, policy_crds=linkerd.crds),
    on_cluster,
)

access_matrix = dict(authorization.matrix)
if settings.verification.enabled:
    verification = MeshVerification(
        "verify",
        MeshVerificationArgs(settings=settings, policy_crds=linkerd.crds, control_plane=[linkerd.control_plane]),
        on_cluster,
    )
    access_matrix.update(verification.matrix)

if settings.monitoring.enabled:
    MeshAlerts(
        "alerts",
        MeshAlertsArgs(settings=settings, anchor_certificates={a: m.certificate_pem for a, m in anchors.items()},
                       linkerd_namespace=namespaces.linkerd, signed_workloads=certificates.signed_workloads,
                       intermediate_certificates=intermediates,
                       intermediate_validity=settings.vault.intermediate_ttl if settings.vault else None),
        on_cluster,
    )

pulumi.export("environment", settings.environment)
pulumi.export("inboundPolicies", {
    ns.name: settings.rollout.policy_for(ns.name) for ns in settings.graph.meshed_namespaces
})
pulumi.export("trustAnchors", {anchor: material.certificate_pem for anchor, material in anchors.items()})
pulumi.export("workloadRoots", {anchor: material.workload_root_pem for anchor, material in anchors.items()})
pulumi.export("trustRotation", rotation_status(settings.pki.rotation))
pulumi.export("linkerd", {"chartVersion": settings.linkerd.chart_version,
                          "highAvailability": settings.linkerd.high_availability,
                          "cni": settings.linkerd.cni, "viz": settings.linkerd.viz})
pulumi.export("accessMatrix", access_matrix)
pulumi.export("egressMatrix", authorization.egress)
