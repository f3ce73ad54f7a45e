"""mtls-mesh: wiring only. Settings are read and validated once (read/) and compiled to the plan of every object the
mesh manages (plan/mesh.py, no Pulumi); the stack's scope (plan/shards.py: a single stack, a platform, or a policy
shard) says which part of the plan it registers; then each component registers its part, and the values only a
provider can make (roots, signed certificates, tokens) pass from the component that makes them to those that use them.
The mesh's own component (Linkerd's or Istio's, by the `mesh` setting) is picked here, from the plan."""

import pulumi

from components.providers import kubernetes_provider, vault_provider
from components.authorization import MeshAuthorization, MeshAuthorizationArgs
from components.cert_manager import AnchorMaterial, CertManager, CertManagerArgs
from components.istio import IstioAlerts, IstioAlertsArgs, IstioControlPlane, IstioControlPlaneArgs
from components.linkerd import LinkerdControlPlane, LinkerdControlPlaneArgs, MeshAlerts, MeshAlertsArgs
from components.linkerd_multicluster import register_multicluster
from components.namespaces import MeshNamespaces, MeshNamespacesArgs
from components.trust import MESH_ROOT_KEYS_OUTPUT, SelfSignedAnchors, SelfSignedWorkloadCertificates, shared_mesh_roots
from components.vault import VaultPki, VaultPkiArgs, VaultTokenReviewer
from components.verification import MeshVerification, MeshVerificationArgs
from components.platform import (CONTRACTS_OUTPUT, applied_once_ready, check_mesh_switch, check_ownership,
                                 check_platform_applied, holders, read_outputs)
from components.rotation import (check_cluster_rotation, check_rotation_step, peer_rotations, root_applied_as_cluster,
                                 rotation_status)
from components.preview_identity import PreviewAccess
from components.runtime import read_stack_config, settings_errors_reported, tune_garbage_collector
from components.shard import register_shard
from plan.linkerd.multicluster_verification import exported_canary, link_checks
from plan.linkerd.verification import mesh_digest
from plan.mesh import compile_mesh
from plan.ownership import HOLDERS_OUTPUT, MESH_OUTPUT, handover_command, next_holders, owners
from plan.rotation import peer_stacks
from plan.shards import SHARD, contract_digests, scoped_matrix, scoped_namespaces, size_advice, stack_scope
from read.settings_format import MESHES
from read.stack_files import load_stack_settings

tune_garbage_collector()

config, secret_keys = read_stack_config()
# Every problem of the settings, then of the objects they compile to, is one error before any resource is registered.
with settings_errors_reported():
    settings = load_stack_settings(config, pulumi.get_stack(), secret_keys=secret_keys,
                                   updating=not pulumi.runtime.is_dry_run())
    plan = compile_mesh(settings)
    scope = stack_scope(settings.graph, settings.policy_shards, settings.shard)
    environment = settings.platform_stack if scope.role == SHARD else settings.stack
    graph_owners = owners(settings.graph, scope.role != "single", environment)
    if scope.role == SHARD:
        # A shard applies only a plan whose platform part (its namespaces, phases, issuers, mesh) is applied; the
        # platform's `mesh` (or, before that output, its `linkerd`/`istio` one) names a switch of mesh in the refusal.
        platform_outputs = read_outputs(settings.platform_stack, (CONTRACTS_OUTPUT, HOLDERS_OUTPUT, MESH_OUTPUT,
                                                                  *MESHES))
        platform_outputs = check_platform_applied(
            scope.shard, settings.platform_stack, contract_digests(plan, settings.graph)[scope.shard], settings.stack,
            preview=pulumi.runtime.is_dry_run(), outputs=platform_outputs,
            wait=settings.kubernetes.delivered_by == "operator", mesh=settings.mesh)
        ledger = holders(platform_outputs)
        platform_applied = any(value is not None for value in platform_outputs.values())
        was_sharded = True
    else:
        # A rotation phase must follow the state this stack last applied (its own trustRotation output), so an
        # out-of-order phase changes nothing. Whether it has applied at all, and as a sharded platform, says whether
        # it may run without a ledger (plan/ownership.py `missing_ledger_problem`).
        previous_outputs = read_outputs(settings.stack, ("trustRotation", HOLDERS_OUTPUT, CONTRACTS_OUTPUT,
                                                         "environment", MESH_OUTPUT, *MESHES, "inboundPolicies"))
        check_rotation_step(previous_outputs["trustRotation"], settings.pki.rotation, settings.stack,
                            settings.pki.allow_rotation_jump)
        if settings.multicluster is not None:
            # And within one phase of the environment's other clusters, as they last applied (plan/rotation.py).
            cluster = settings.multicluster
            check_cluster_rotation(
                settings.pki.rotation,
                peer_rotations(peer_stacks([p.stack for p in cluster.peers], cluster.mesh_root_stack, settings.stack)),
                settings.stack, root_stack=cluster.mesh_root_stack, preview=pulumi.runtime.is_dry_run(),
                allow_jump=settings.pki.allow_rotation_jump,
                root_is_cluster=root_applied_as_cluster(cluster.mesh_root_stack))
        # A change of mesh deletes one control plane while every meshed pod keeps the other's proxy: only while both
        # meshes admit plaintext, or acknowledged (plan/ownership.py `mesh_switch_problem`, docs/changing-mesh.md).
        check_mesh_switch(settings.stack, previous_outputs, settings.mesh, plan.inbound_policies,
                          preview=pulumi.runtime.is_dry_run(), allowed=settings.allow_mesh_switch)
        ledger = holders(previous_outputs)
        platform_applied = any(value is not None for value in previous_outputs.values())
        was_sharded = previous_outputs[CONTRACTS_OUTPUT] is not None
    # Which stack holds each namespace's policy objects changes only by a handover (plan/ownership.py): never by an
    # `up` that deletes them here while another stack creates them.
    check_ownership(settings.stack, scope.namespaces, graph_owners, ledger, handover_command(environment),
                    preview=pulumi.runtime.is_dry_run(), role=scope.role, platform=environment,
                    platform_applied=platform_applied, was_sharded=was_sharded)

kubernetes = kubernetes_provider("kubernetes", settings.kubernetes, settings.stack)
on_cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes})
AUTHORIZATION, CERTIFICATES = "authz", "certs"
registered = scoped_namespaces(plan, scope)
advice = size_advice(registered, scope)
if advice:
    pulumi.log.warn(advice)

if scope.role == SHARD:
    register_shard(registered, kubernetes, authorization=AUTHORIZATION, certificates=CERTIFICATES)
    pulumi.export("shard", scope.shard)
    pulumi.export(MESH_OUTPUT, settings.mesh)
    pulumi.export("platformStack", settings.platform_stack)
    pulumi.export("shardContract", contract_digests(plan, settings.graph)[scope.shard])
    pulumi.export("accessMatrix", scoped_matrix(plan.access_matrix, scope, settings.graph))
    pulumi.export("egressMatrix", scoped_matrix(plan.egress_matrix, scope, settings.graph))
else:
    namespaces = MeshNamespaces(
        "mesh",
        MeshNamespacesArgs(control_plane=plan.control_plane_namespace, viz=plan.viz_namespace, namespaces=plan.namespaces),
        on_cluster,
    )

    # Who a pull request's preview runs as may read and dry-run what this program manages, and write nothing
    # (plan/preview_identity.py).
    PreviewAccess("preview", plan.preview,
                  {**namespaces.namespaces, plan.control_plane_namespace["metadata"]["name"]: namespaces.control_plane},
                  on_cluster)

    workload_tls = {}
    if plan.vault is not None:
        reviewer = None
        if plan.vault.token_reviewer:
            reviewer = VaultTokenReviewer("vault-token-reviewer", plan.vault.token_reviewer, on_cluster)
        pki = VaultPki("pki", VaultPkiArgs(settings.vault, plan.vault, reviewer_token=reviewer.token if reviewer else None,
                                           reviewer_ready=(reviewer.binding,) if reviewer else ()),
                       pulumi.ResourceOptions(providers={"vault": vault_provider("vault", settings.vault)}))
        anchors = {a: AnchorMaterial(v.root_certificate_pem, v.workload_root_pem, ready=v.ready,
                                     workload_ready=v.workload_ready) for a, v in pki.anchors.items()}
        identity_login_ready, namespace_login_ready = pki.identity_login_ready, pki.namespace_login_ready
        intermediates = {a: v.intermediate_pem for a, v in pki.anchors.items() if v.intermediate_pem is not None}
    else:
        # A secondary cluster of a multi-cluster environment shares the root-owning stack's roots.
        self_signed = SelfSignedAnchors(
            "anchor", plan.self_signed,
            shared_roots=shared_mesh_roots(plan.self_signed.mesh_root_stack, plan.self_signed.anchors)
            if plan.self_signed.mesh_root_stack else None)
        anchors = {a: AnchorMaterial(v.certificate_pem, v.workload_root_pem, v.private_key_pem)
                   for a, v in self_signed.anchors.items()}
        identity_login_ready, namespace_login_ready = [], {}
        intermediates = {}
        if plan.self_signed.workload_requests:
            signed = SelfSignedWorkloadCertificates(
                "workload-tls", plan.self_signed, self_signed.anchors[plan.self_signed.issuing_anchor])
            workload_tls = signed.certificates

    certificates = CertManager(
        CERTIFICATES,
        CertManagerArgs(plan=plan.certificates, certificate_namespaces=plan.certificate_namespaces(), anchors=anchors,
                        namespaces=namespaces.namespaces,
                        linkerd_namespace=namespaces.linkerd if plan.linkerd is not None else None,
                        identity_login_ready=identity_login_ready, namespace_login_ready=namespace_login_ready,
                        workload_tls=workload_tls, certificate_groups=tuple(registered)),
        on_cluster,
    )

    if plan.istio is not None:
        mesh = IstioControlPlane(
            "istio",
            IstioControlPlaneArgs(
                plan=plan.istio, namespace=namespaces.control_plane,
                anchor_keys={a: (m.certificate_pem, m.private_key_pem) for a, m in anchors.items()
                             if m.private_key_pem is not None},
                cert_manager_ready=certificates.installed, trust_manager=certificates.trust_manager,
                mesh_roots=certificates.mesh_roots, mesh_ready=[r for m in anchors.values() for r in m.ready],
                login_ready=identity_login_ready),
            on_cluster,
        )
        policy_crds, control_plane = mesh.crds, mesh.control_plane
    else:
        linkerd = LinkerdControlPlane(
            "linkerd",
            LinkerdControlPlaneArgs(plan=plan.linkerd, linkerd_namespace=namespaces.linkerd, viz_namespace=namespaces.viz,
                                    cert_manager_ready=certificates.installed,
                                    identity_ready=[certificates.identity_issuer, certificates.trust_bundle]),
            on_cluster,
        )
        policy_crds, control_plane = linkerd.crds, linkerd.control_plane

    MeshAuthorization(
        AUTHORIZATION,
        MeshAuthorizationArgs(namespace_objects={name: ns.policy for name, ns in registered.items()},
                              namespace_manifests={name: ns.policy_manifest for name, ns in registered.items()},
                              namespaces=namespaces.namespaces, policy_crds=policy_crds),
        on_cluster,
    )

    verification = None
    if plan.verification is not None:
        verification = MeshVerification(
            "verify",
            MeshVerificationArgs(plan=exported_canary(plan.verification) if plan.multicluster is not None
                                 else plan.verification, policy_crds=policy_crds, control_plane=[control_plane]),
            on_cluster,
        )

    if plan.multicluster is not None:
        # A cluster stack: its Links from the peers' applied `multicluster` outputs, the release, and its own output
        # for them (docs/multicluster.md). A peer's export that disagrees with its stack file is a settings error.
        with settings_errors_reported():
            register_multicluster(
                plan.multicluster.cluster, plan.multicluster.peer_stacks, chart_version=plan.linkerd.chart_version,
                repository=plan.linkerd.repository, api_server=settings.multicluster.api_server,
                networks=settings.policy.cluster_networks, linkerd_namespace=namespaces.linkerd,
                control_plane=control_plane, policy_crds=policy_crds,
                prometheus_service_accounts=settings.policy.prometheus_service_accounts,
                prometheus_networks=settings.policy.prometheus_networks,
                monitoring_labels=settings.monitoring.labels, monitoring=settings.monitoring.enabled,
                link_checks=(lambda cluster: link_checks(cluster, settings.verification.client_image,
                                                         mesh_digest(settings),
                                                         phase=settings.rollout.default_policy))
                if plan.verification is not None else None,
                checks_after=[verification] if verification is not None else [],
                network_policies=plan.multicluster.network_policies, gateway_egress=plan.multicluster.gateway_egress,
                workload_namespaces=namespaces.namespaces,
                opts=on_cluster)

    if plan.alerts is not None and plan.istio is not None:
        IstioAlerts(
            "alerts",
            IstioAlertsArgs(plan=plan.alerts, anchor_certificates={a: m.certificate_pem for a, m in anchors.items()},
                            namespace=namespaces.control_plane, signed_workloads=certificates.signed_workloads,
                            intermediate_certificates=intermediates),
            on_cluster,
        )
    elif plan.alerts is not None:
        MeshAlerts(
            "alerts",
            MeshAlertsArgs(plan=plan.alerts, anchor_certificates={a: m.certificate_pem for a, m in anchors.items()},
                           linkerd_namespace=namespaces.linkerd, signed_workloads=certificates.signed_workloads,
                           intermediate_certificates=intermediates),
            on_cluster,
        )

    pulumi.export("environment", settings.environment)
    pulumi.export(MESH_OUTPUT, settings.mesh)
    pulumi.export("inboundPolicies", dict(plan.inbound_policies))
    pulumi.export("trustAnchors", {anchor: material.certificate_pem for anchor, material in anchors.items()})
    pulumi.export("workloadRoots", {anchor: material.workload_root_pem for anchor, material in anchors.items()})
    pulumi.export("trustRotation", rotation_status(settings.pki.rotation, plan.rotation_restart))
    if plan.self_signed is not None and plan.self_signed.shares_root:
        # For the environment's other cluster stacks (components/trust.shared_mesh_roots): a secret, never printed.
        pulumi.export(MESH_ROOT_KEYS_OUTPUT, pulumi.Output.secret(
            {anchor: material.private_key_pem for anchor, material in anchors.items()}))
    if plan.istio is not None:
        pulumi.export("istio", {"chartVersion": plan.istio.chart_version,
                                "istioCsrChartVersion": plan.istio.istio_csr_chart_version,
                                "highAvailability": plan.istio.high_availability})
    else:
        pulumi.export("linkerd", {"chartVersion": plan.linkerd.chart_version,
                                  "highAvailability": plan.linkerd.high_availability,
                                  "cni": plan.linkerd.cni, "viz": plan.linkerd.viz_values is not None})
    pulumi.export("accessMatrix", scoped_matrix(plan.access_matrix, scope, settings.graph))
    pulumi.export("egressMatrix", scoped_matrix(plan.egress_matrix, scope, settings.graph))
    # Which stack's state holds each namespace's groups: what every stack of the environment checks itself against.
    pulumi.export(HOLDERS_OUTPUT, next_holders(ledger, graph_owners))
    if settings.policy_shards:
        # What each shard's objects assume of this stack, as applied: a shard refuses a plan whose digest is not here.
        pulumi.export(CONTRACTS_OUTPUT, applied_once_ready(
            contract_digests(plan, settings.graph),
            [*namespaces.namespaces.values(), *certificates.issuers.values(), policy_crds]))
