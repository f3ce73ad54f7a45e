"""CertManager: registers cert-manager and trust-manager (optionally), the anchors' public roots (and in dev the anchor
key), the identity issuers, the Linkerd identity issuer Certificate, the trust bundles, and each certificate namespace's
issuer and Certificates (or, without Vault, the Secrets of the certificates the program signed), from the plan
(plan.CertificatesPlan, plan.NamespacePlan; objects built in cert_manager.py).

Only the objects that carry a provider's value are built here: the roots' ConfigMaps, the dev anchor Secret and the
signed workloads' Secrets, from the same builders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

import pulumi
import pulumi_kubernetes as k8s

from plan.cert_manager import (JETSTACK_CHARTS, anchor_config_map, anchor_secret, workload_anchor_config_map,
                               workload_secret_name, workload_tls_secret)
from components.k8s import moved_in, register, register_group
from plan.mesh import CertificatesPlan, NamespacePlan
from plan.trust import SignedWorkload


@dataclass
class AnchorMaterial:
    """One anchor as the cluster needs it: its mesh root (and, in dev, its key), its workload root, and what must exist
    before either is used."""

    certificate_pem: pulumi.Output[str]
    workload_root_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str] | None = None
    ready: list[pulumi.Resource] = field(default_factory=list)
    workload_ready: list[pulumi.Resource] = field(default_factory=list)


@dataclass
class CertManagerArgs:
    plan: CertificatesPlan
    # The namespaces with certificate services (their issuer and Certificates, or their signed services).
    certificate_namespaces: Mapping[str, NamespacePlan]
    anchors: Mapping[str, AnchorMaterial]
    namespaces: Mapping[str, pulumi.Resource]
    # The namespace of the mesh CA this component registers (the plan's identity issuer Certificate: Linkerd's), its
    # issuers and, in dev, the anchor keys; None with a mesh whose own component registers its CA chain from the
    # anchors' ConfigMaps registered here (Istio's).
    linkerd_namespace: pulumi.Resource | None
    # Vault: what the identity issuer's login and each namespace's login need before an issuer can become Ready.
    identity_login_ready: list[pulumi.Resource] = field(default_factory=list)
    namespace_login_ready: Mapping[str, list[pulumi.Resource]] = field(default_factory=dict)
    # Without Vault: service key -> the certificate the program signed for it.
    workload_tls: Mapping[str, SignedWorkload] = field(default_factory=dict)
    # The namespaces whose workload Certificates this stack registers (None: all); a platform stack leaves the
    # shards' to their stacks, and keeps their issuers.
    certificate_groups: Collection[str] | None = None


def workload_group_name(component: str, namespace: str) -> str:
    """The ConfigGroup of a namespace's workload Certificates; a shard stack registers it under the same name."""
    return f"{component}-workload-{namespace}"


class CertManager(pulumi.ComponentResource):
    def __init__(self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:cert_manager:CertManager", name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self)

        def after(*resources: pulumi.Resource | None, **extra: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[r for r in resources if r is not None], **extra)

        installed: list[pulumi.Resource] = []
        trust_manager = None
        if plan.cert_manager_values is not None:
            cert_manager = k8s.helm.v3.Release(
                # A fixed release name: without one pulumi-kubernetes appends a random suffix, and the chart names its
                # service account after the release, so the token-request binding would name an account that does
                # not exist and cert-manager could never log in to Vault.
                f"{name}-cert-manager", name="cert-manager", chart="cert-manager", version=plan.chart_version,
                repository_opts={"repo": JETSTACK_CHARTS}, namespace=plan.namespace, create_namespace=True,
                values=plan.cert_manager_values, opts=child)
            trust_manager = k8s.helm.v3.Release(
                f"{name}-trust-manager", name="trust-manager", chart="trust-manager",
                version=plan.trust_manager_chart_version, repository_opts={"repo": JETSTACK_CHARTS},
                namespace=plan.namespace, values=plan.trust_manager_values, opts=after(cert_manager))
            installed = [cert_manager]

        # What cert-manager objects elsewhere wait for.
        self.installed: list[pulumi.Resource] = installed
        self.trust_manager = trust_manager

        # Public roots where trust-manager reads them; in dev, the anchor key next to the identity issuer only.
        identity_namespace = (plan.identity_issuer_certificate["metadata"]["namespace"]
                              if plan.identity_issuer_certificate is not None else None)
        mesh_roots, workload_roots, anchor_keys = [], [], []
        for anchor, material in args.anchors.items():
            mesh_roots.append(register(f"{name}-anchor-{anchor}",
                                       anchor_config_map(anchor, plan.namespace, material.certificate_pem),
                                       after(*installed, *material.ready)))
            workload_roots.append(register(
                f"{name}-workload-anchor-{anchor}",
                workload_anchor_config_map(anchor, plan.namespace, material.workload_root_pem),
                after(*installed, *material.workload_ready)))
            if material.private_key_pem is not None and args.linkerd_namespace is not None and identity_namespace:
                anchor_keys.append(register(f"{name}-anchor-key-{anchor}",
                                            anchor_secret(anchor, material.certificate_pem, material.private_key_pem,
                                                          identity_namespace),
                                            after(args.linkerd_namespace)))

        def issuing_rbac(namespace: str, objects: tuple[dict[str, Any], ...],
                         namespace_resource: pulumi.Resource) -> list[pulumi.Resource]:
            return [register(f"{name}-{namespace}-{obj['kind'].lower()}", obj, after(*installed, namespace_resource))
                    for obj in objects]

        # An identity issuer is usable only once its anchor's signing chain is complete (Vault: set-signed).
        mesh_ready = [resource for material in args.anchors.values() for resource in material.ready]
        identity_rbac = issuing_rbac(identity_namespace or "", plan.identity_rbac, args.linkerd_namespace)
        # The roots trust-manager reads: another mesh's Bundle of them waits for these.
        self.mesh_roots: list[pulumi.Resource] = mesh_roots
        self.issuers: dict[str, pulumi.Resource] = {} if args.linkerd_namespace is None else {
            f"{identity_namespace}/{issuer_name}": register(
                f"{name}-{issuer_name}", obj,
                after(*installed, args.linkerd_namespace, *anchor_keys, *mesh_ready, *identity_rbac, *args.identity_login_ready))
            for issuer_name, obj in plan.identity_issuers.items()
        }
        issuer_ref, self.identity_issuer, self.trust_bundle = None, None, None
        if plan.identity_issuer_certificate is not None and plan.trust_bundle is not None:
            issuer_ref = plan.identity_issuer_certificate["spec"]["issuerRef"]["name"]
            self.identity_issuer = register(
                f"{name}-identity-issuer", plan.identity_issuer_certificate,
                after(self.issuers[f"{identity_namespace}/{issuer_ref}"], args.linkerd_namespace))
            self.trust_bundle = register(f"{name}-trust-roots", plan.trust_bundle,
                                         after(trust_manager, *mesh_roots, args.linkerd_namespace))

        self.workload_certificates: dict[str, pulumi.Resource] = {}
        # Without Vault: (namespace, Secret name) -> the certificate the program signed (its expiry alert reads it).
        self.signed_workloads: dict[tuple[str, str], pulumi.Output[str]] = {}
        workload_ready = [resource for material in args.anchors.values() for resource in material.workload_ready]
        for namespace, ns_plan in args.certificate_namespaces.items():
            namespace_resource = args.namespaces[namespace]
            for service in ns_plan.signed_services:
                tls = args.workload_tls[service.key]
                self.signed_workloads[(namespace, workload_secret_name(service))] = tls.certificate_pem
                register(f"{name}-tls-{service.key}",
                         workload_tls_secret(service, tls.certificate_pem, tls.private_key_pem, tls.ca_pem),
                         after(namespace_resource))
            if ns_plan.issuer is None:
                continue
            rbac = issuing_rbac(namespace, ns_plan.issuer_rbac, namespace_resource)
            issuer_name = ns_plan.issuer["metadata"]["name"]
            self.issuers[f"{namespace}/{issuer_name}"] = issuer_resource = register(
                f"{name}-{namespace}-{issuer_name}", ns_plan.issuer,
                after(*installed, namespace_resource, *workload_ready, *rbac, *args.namespace_login_ready.get(namespace, [])))
            if args.certificate_groups is not None and namespace not in args.certificate_groups:
                continue
            # Workload certificates grow with the graph: one ConfigGroup per namespace (see k8s.register_group).
            self.workload_certificates[namespace] = register_group(
                workload_group_name(name, namespace), ns_plan.certificates, moved_in(self),
                after=[issuer_resource, namespace_resource])

        self.workload_trust = None
        if plan.workload_trust_bundle is not None:
            self.workload_trust = register(f"{name}-workload-trust", plan.workload_trust_bundle,
                                           after(trust_manager, *workload_roots, *args.namespaces.values()))
        self.register_outputs({
            "identityIssuer": issuer_ref,
            "bundleAnchors": list(plan.bundle_anchors),
            "workloadCertificates": sorted(
                [f"{ns}/{c['metadata']['name']}" for ns, p in args.certificate_namespaces.items() for c in p.certificates
                 if ns in self.workload_certificates]
                + [f"{ns}/{workload_secret_name(s)}" for ns, p in args.certificate_namespaces.items()
                   for s in p.signed_services]),
        })
