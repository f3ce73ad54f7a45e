"""mtls-mesh: wiring only. Settings are read and validated once and compiled to the plan of every object the stack
manages (components/plan.py, no Pulumi); then each component registers its part of the plan."""

import pulumi

from components.alerts import MeshAlerts, MeshAlertsArgs
from components.authorization import MeshAuthorization, MeshAuthorizationArgs
from components.cert_manager import AnchorMaterial, CertManager, CertManagerArgs
from components.namespaces import MeshNamespaces, MeshNamespacesArgs
from components.plan import compile_mesh
from components.providers import kubernetes_provider, vault_provider
from components.register_linkerd import LinkerdControlPlane, LinkerdControlPlaneArgs
from components.register_trust import SelfSignedAnchors, SelfSignedWorkloadCertificates
from components.register_verification import MeshVerification, MeshVerificationArgs
from components.rotation import check_rotation_step, read_previous_rotation, rotation_status
from components.runtime import read_stack_config, settings_errors_reported, tune_garbage_collector
from components.settings import load_settings
from components.vault_pki import VaultPki, VaultPkiArgs, VaultTokenReviewer

tune_garbage_collector()

config, secret_keys = read_stack_config()
# Every problem of the settings, then of the objects they compile to, is one error before any resource is registered.
with settings_errors_reported():
    settings = load_settings(config, pulumi.get_stack(), secret_keys=secret_keys,
                             updating=not pulumi.runtime.is_dry_run())
    plan = compile_mesh(settings)
    # A rotation phase must follow the state this stack last applied (its own trustRotation output), so an
    # out-of-order phase changes nothing.
    check_rotation_step(read_previous_rotation(), settings.pki.rotation, settings.stack,
                        settings.pki.allow_rotation_jump)

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
    self_signed = SelfSignedAnchors("anchor", plan.self_signed)
    anchors = {a: AnchorMaterial(v.certificate_pem, v.workload_root_pem, v.private_key_pem)
               for a, v in self_signed.anchors.items()}
    identity_login_ready, namespace_login_ready = [], {}
    intermediates = {}
    if plan.self_signed.workload_requests:
        signed = SelfSignedWorkloadCertificates(
            "workload-tls", plan.self_signed, self_signed.anchors[plan.self_signed.issuing_anchor])
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
    LinkerdControlPlaneArgs(plan=plan.linkerd, linkerd_namespace=namespaces.linkerd, viz_namespace=namespaces.viz,
                            cert_manager_ready=certificates.installed,
                            identity_ready=[certificates.identity_issuer, certificates.trust_bundle]),
    on_cluster,
)

authorization = MeshAuthorization(
    "authz",
    MeshAuthorizationArgs(settings=settings, namespaces=namespaces.namespaces, policy_crds=linkerd.crds),
    on_cluster,
)

if plan.verification is not None:
    MeshVerification(
        "verify",
        MeshVerificationArgs(plan=plan.verification, policy_crds=linkerd.crds, control_plane=[linkerd.control_plane]),
        on_cluster,
    )

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
pulumi.export("inboundPolicies", dict(plan.inbound_policies))
pulumi.export("trustAnchors", {anchor: material.certificate_pem for anchor, material in anchors.items()})
pulumi.export("workloadRoots", {anchor: material.workload_root_pem for anchor, material in anchors.items()})
pulumi.export("trustRotation", rotation_status(settings.pki.rotation))
pulumi.export("linkerd", {"chartVersion": settings.linkerd.chart_version,
                          "highAvailability": settings.linkerd.high_availability,
                          "cni": settings.linkerd.cni, "viz": settings.linkerd.viz})
pulumi.export("accessMatrix", dict(plan.access_matrix))
pulumi.export("egressMatrix", dict(plan.egress_matrix))
