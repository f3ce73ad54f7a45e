"""LinkerdControlPlane: registers the Linkerd CRDs, the control plane with our external CA, the optional CNI plugin
and viz extension, and the webhooks' own PKI, from the plan (plan.LinkerdPlan; values and objects in
plan/linkerd/control_plane.py). `crds` is what Linkerd policy objects wait for; `control_plane` is the running control
plane.

MeshAlerts: registers the Linkerd path's PrometheusRule and the proxies' PodMonitor (plan/linkerd/alerts.py) from the
plan (plan.AlertsPlan). Every rule group known from the settings comes from the plan; the expiry groups of the trust
anchors, of the Vault intermediates and (without Vault) of the certificates the program signs are written here, from
each certificate's notAfter once its provider has made it (unknown in a preview until then). Istio's counterpart is
components/istio.py IstioAlerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import register
from components.providers import secret_input
from plan.alerts import anchor_rule_group, certificate_not_after, intermediate_rule_group, signed_workload_rule_group
from plan.linkerd.alerts import prometheus_rule
from plan.linkerd.control_plane import CNI_NAMESPACE
from plan.objects import HELM_TIMEOUT_SECONDS
from plan.linkerd.namespaces import LINKERD_NAMESPACE, VIZ_NAMESPACE
from plan.mesh import AlertsPlan, LinkerdPlan, with_rule_labels


@dataclass
class LinkerdControlPlaneArgs:
    plan: LinkerdPlan
    linkerd_namespace: pulumi.Resource
    viz_namespace: pulumi.Resource | None
    cert_manager_ready: list[pulumi.Resource] = field(default_factory=list)
    identity_ready: list[pulumi.Resource] = field(default_factory=list)


class LinkerdControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: LinkerdControlPlaneArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:linkerd:LinkerdControlPlane", name, None, opts)
        plan = args.plan

        def after(*resources: pulumi.Resource | None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[r for r in resources if r is not None])

        def release(resource_name: str, chart: str, namespace: str, values: dict[str, Any],
                    opts: pulumi.ResourceOptions, create_namespace: bool = False) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                resource_name, name=chart, chart=chart, version=plan.chart_version,
                repository_opts={"repo": secret_input(plan.repository)}, namespace=namespace,
                create_namespace=create_namespace, values=values, timeout=HELM_TIMEOUT_SECONDS, opts=opts)

        namespaces = {LINKERD_NAMESPACE: args.linkerd_namespace, VIZ_NAMESPACE: args.viz_namespace}
        webhook_cas: dict[str, pulumi.Resource] = {}
        for namespace, (self_signed, ca_certificate, ca_issuer) in plan.webhook_cas.items():
            prefix = name if namespace == LINKERD_NAMESPACE else f"{name}-{namespace}"
            signer = register(f"{prefix}-webhook-selfsigned", self_signed, after(*args.cert_manager_ready, namespaces[namespace]))
            certificate = register(f"{prefix}-webhook-ca-certificate", ca_certificate, after(signer))
            webhook_cas[namespace] = register(f"{prefix}-webhook-ca", ca_issuer, after(certificate))
        self.webhook_certificates: dict[str, pulumi.Resource] = {}
        for certificate_name, obj in plan.webhook_certificates.items():
            namespace = obj["metadata"]["namespace"]
            self.webhook_certificates[certificate_name] = register(
                f"{name}-{certificate_name}", obj, after(webhook_cas[namespace], namespaces[namespace]))

        def certificates_in(namespace: str) -> list[pulumi.Resource]:
            return [self.webhook_certificates[c] for c, obj in plan.webhook_certificates.items()
                    if obj["metadata"]["namespace"] == namespace]

        self.crds = release(f"{name}-crds", "linkerd-crds", LINKERD_NAMESPACE, plan.crds_values,
                            after(args.linkerd_namespace))
        cni = None
        if plan.cni:
            # The CNI plugin must be on every node before the first meshed pod is created without proxy-init.
            cni = release(f"{name}-cni", "linkerd2-cni", CNI_NAMESPACE, {}, after(), create_namespace=True)
        self.control_plane = release(
            f"{name}-control-plane", "linkerd-control-plane", LINKERD_NAMESPACE, plan.control_plane_values,
            after(args.linkerd_namespace, self.crds, cni, *args.identity_ready, *certificates_in(LINKERD_NAMESPACE)))
        self.viz = None
        if plan.viz_values is not None:
            self.viz = release(f"{name}-viz", "linkerd-viz", VIZ_NAMESPACE, plan.viz_values,
                               after(args.viz_namespace, self.control_plane, *certificates_in(VIZ_NAMESPACE)))
        self.register_outputs({
            "chartVersion": plan.chart_version,
            "highAvailability": plan.high_availability,
            "webhookCertificates": sorted(self.webhook_certificates),
        })


@dataclass
class MeshAlertsArgs:
    plan: AlertsPlan
    anchor_certificates: Mapping[str, pulumi.Output[str]]
    linkerd_namespace: pulumi.Resource
    # Without Vault: (namespace, Secret name) -> the workload certificate the program signed.
    signed_workloads: Mapping[tuple[str, str], pulumi.Output[str]] = field(default_factory=dict)
    # With Vault: anchor -> the intermediate certificate its mount signs with.
    intermediate_certificates: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)


class MeshAlerts(pulumi.ComponentResource):
    def __init__(self, name: str, args: MeshAlertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:alerts:MeshAlerts", name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self, depends_on=[args.linkerd_namespace])
        anchors, workloads = sorted(args.anchor_certificates), sorted(args.signed_workloads)
        intermediates = sorted(args.intermediate_certificates)

        # Only the expiry groups wait for the certificates (unknown in a preview until they exist): every other rule
        # is known from the settings, and a preview shows it.
        spec_groups: list[Any] = [*plan.rule_groups, pulumi.Output.all(*[args.anchor_certificates[a] for a in anchors]).apply(
            lambda pems: anchor_rule_group(
                {a: certificate_not_after(pem, f"trust anchor {a}") for a, pem in zip(anchors, pems, strict=True)},
                plan.anchor_validity))]
        if workloads:
            spec_groups.append(pulumi.Output.all(*[args.signed_workloads[w] for w in workloads]).apply(
                lambda pems: signed_workload_rule_group(
                    {w: certificate_not_after(pem, f"workload certificate {w[0]}/{w[1]}")
                     for w, pem in zip(workloads, pems, strict=True)},
                    plan.workload_renew_before)))
        if intermediates:
            assert plan.intermediate_validity is not None
            spec_groups.append(pulumi.Output.all(*[args.intermediate_certificates[a] for a in intermediates]).apply(
                lambda pems: intermediate_rule_group(
                    {a: certificate_not_after(pem, f"Vault intermediate {a}")
                     for a, pem in zip(intermediates, pems, strict=True)}, plan.intermediate_validity)))
        # The expiry groups carry the stack's own labels too (a cluster stack's `cluster`), as the plan's groups do.
        spec_groups = [*plan.rule_groups,
                       *(g.apply(lambda group: with_rule_labels(group, plan.rule_labels))
                         for g in spec_groups[len(plan.rule_groups):])]
        self.rule = register(f"{name}-rules", prometheus_rule(spec_groups, plan.labels), child)
        self.pod_monitor = register(f"{name}-pod-monitor", plan.pod_monitor, child)
        self.register_outputs({"alerts": sorted({r["alert"] for g in plan.rule_groups for r in g["rules"]})})
