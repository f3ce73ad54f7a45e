"""IstioControlPlane: registers Istio on the operator's trust chain from the plan (plan.IstioPlan; values and objects in
plan/istio/), and IstioAlerts its PrometheusRule and monitors (plan.AlertsPlan built by plan/istio/alerts.py).

The order is the one the sources force (docs/istio.md, "Wiring"):
- the Bundle of the mesh roots istio-csr pins, once trust-manager and the anchors' ConfigMaps exist;
- the Istio CA's signers (with Vault: after their login and its RBAC; without: after the anchors' keys, which only
  this component writes into istio-system), then the Istio CA, then its `ca:` Issuer;
- the `base` chart (the CRDs), then istio-csr: it refuses to start without its root file;
- istiod's Certificate after the Issuer, registered with `pulumi.com/waitFor: condition=Ready`;
- then istiod, after istio-csr, its Certificate (Ready) and the Job that completes once `istio-ca-root-cert` exists.
  Helm's wait for istio-csr's pods is not enough: that readiness is istio-csr's serving certificate and gRPC server
  (`AddReadyzCheck` "tls_provider", "grpc_server" in cmd/app/app.go at v0.17.0, d8fadec3b039), while
  `istio-ca-root-cert` is written later by its ConfigMap controller. istiod mounts both as optional and would run
  without them silently (docs/istio.md, "Wiring").

`crds` (the base release) is what Istio policy objects wait for; `control_plane` (istiod) is the running mesh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import register
from plan.istio.alerts import prometheus_rule, root_rule_groups
from plan.istio.names import (BASE_CHART, BASE_RELEASE, ISTIO_CSR_CHART, ISTIO_CSR_NAMESPACE, ISTIO_CSR_RELEASE,
                              ISTIO_NAMESPACE, ISTIOD_CHART, ISTIOD_RELEASE)
from plan.istio.trust import istio_anchor_secret
from plan.alerts import certificate_not_after, signed_workload_rule_group
from plan.objects import HELM_TIMEOUT_SECONDS
from plan.mesh import AlertsPlan, IstioPlan


@dataclass
class IstioControlPlaneArgs:
    plan: IstioPlan
    namespace: pulumi.Resource
    # Without Vault: anchor -> (certificate, key) for the signers' Secrets in istio-system.
    anchor_keys: Mapping[str, tuple[pulumi.Output[str], pulumi.Output[str]]] = field(default_factory=dict)
    cert_manager_ready: list[pulumi.Resource] = field(default_factory=list)
    trust_manager: pulumi.Resource | None = None
    # The anchors' root ConfigMaps the Bundle reads, and what makes each anchor's signing chain complete.
    mesh_roots: list[pulumi.Resource] = field(default_factory=list)
    mesh_ready: list[pulumi.Resource] = field(default_factory=list)
    # With Vault: the signers' login (policy and Kubernetes auth role).
    login_ready: list[pulumi.Resource] = field(default_factory=list)


class IstioControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: IstioControlPlaneArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:istio:IstioControlPlane", name, None, opts)
        plan = args.plan

        def after(*resources: pulumi.Resource | None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[r for r in resources if r is not None])

        def release(resource_name: str, release_name: str, chart: str, version: str, repository: str, namespace: str,
                    values: dict[str, Any], opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
            # Fixed release names (plan/istio/names.py): without one pulumi-kubernetes appends a random suffix.
            return k8s.helm.v3.Release(
                resource_name, name=release_name, chart=chart, version=version, repository_opts={"repo": repository},
                namespace=namespace, values=values, timeout=HELM_TIMEOUT_SECONDS, opts=opts)

        installed = [*args.cert_manager_ready, args.namespace]
        anchor_keys = [register(f"{name}-anchor-key-{anchor}", istio_anchor_secret(anchor, *args.anchor_keys[anchor]),
                                after(args.namespace))
                       for anchor in plan.anchor_keys]
        rbac = [register(f"{name}-{obj['kind'].lower()}", obj, after(*installed)) for obj in plan.signer_rbac]
        self.signers = {signer: register(f"{name}-{signer}", obj,
                                         after(*installed, *anchor_keys, *rbac, *args.mesh_ready, *args.login_ready))
                        for signer, obj in plan.signers.items()}
        self.roots = register(f"{name}-roots", plan.roots_bundle, after(args.trust_manager, *args.mesh_roots, args.namespace))
        issuing = plan.ca_certificate["spec"]["issuerRef"]["name"]
        self.ca = register(f"{name}-ca", plan.ca_certificate, after(self.signers[issuing], args.namespace))
        self.ca_issuer = register(f"{name}-ca-issuer", plan.ca_issuer, after(self.ca))

        self.crds = release(f"{name}-base", BASE_RELEASE, BASE_CHART, plan.chart_version, plan.repository,
                            ISTIO_NAMESPACE, plan.base_values, after(args.namespace))
        self.istio_csr = release(f"{name}-csr", ISTIO_CSR_RELEASE, ISTIO_CSR_CHART, plan.istio_csr_chart_version,
                                 plan.istio_csr_repository, ISTIO_CSR_NAMESPACE, plan.istio_csr_values,
                                 after(self.crds, self.ca_issuer, self.roots, *args.cert_manager_ready))
        # istiod's serving certificate, awaited until Ready (its pulumi.com/waitFor), and the Job that completes once
        # istio-csr has written istio-ca-root-cert: istiod's Deployment mounts both as optional and would start without.
        self.istiod_certificate = register(f"{name}-istiod-certificate", plan.istiod_certificate, after(self.ca_issuer))
        check_rbac = [register(f"{name}-root-cert-check-{obj['kind'].lower()}", obj, after(args.namespace))
                      for obj in plan.root_cert_check if obj["kind"] != "Job"]
        (check_job,) = [obj for obj in plan.root_cert_check if obj["kind"] == "Job"]
        self.root_cert_check = register(f"{name}-root-cert-check", check_job, after(self.istio_csr, *check_rbac))
        self.control_plane = release(f"{name}-istiod", ISTIOD_RELEASE, ISTIOD_CHART, plan.chart_version, plan.repository,
                                     ISTIO_NAMESPACE, plan.istiod_values,
                                     after(self.crds, self.istio_csr, self.istiod_certificate, self.root_cert_check))
        self.register_outputs({
            "chartVersion": plan.chart_version,
            "istioCsrChartVersion": plan.istio_csr_chart_version,
            "highAvailability": plan.high_availability,
            "signers": sorted(plan.signers),
        })


@dataclass
class IstioAlertsArgs:
    plan: AlertsPlan
    anchor_certificates: Mapping[str, pulumi.Output[str]]
    namespace: pulumi.Resource
    # Without Vault: (namespace, Secret name) -> the workload certificate the program signed.
    signed_workloads: Mapping[tuple[str, str], pulumi.Output[str]] = field(default_factory=dict)
    # With Vault: anchor -> the intermediate certificate its mount signs with.
    intermediate_certificates: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)


class IstioAlerts(pulumi.ComponentResource):
    """The PrometheusRule `mtls-mesh-istio` (the plan's groups, and the roots' and intermediates' expiry groups from
    the certificates once a provider made them), the sidecars' PodMonitor and istiod's and istio-csr's monitors."""

    def __init__(self, name: str, args: IstioAlertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:istio:IstioAlerts", name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self, depends_on=[args.namespace])
        anchors, workloads = sorted(args.anchor_certificates), sorted(args.signed_workloads)
        intermediates = sorted(args.intermediate_certificates)

        # Only the expiry groups wait for the certificates (unknown in a preview until they exist): every other rule
        # is known from the settings, and a preview shows it.
        anchor_pems = [args.anchor_certificates[a] for a in anchors]

        def not_after(names: list[Any], pems: list[str], what: str) -> dict[Any, int]:
            return {n: certificate_not_after(pem, f"{what} {n}") for n, pem in zip(names, pems, strict=True)}

        spec_groups: list[Any] = [*plan.rule_groups, pulumi.Output.all(*anchor_pems).apply(
            lambda pems: root_rule_groups(not_after(anchors, list(pems), "trust anchor"), plan.anchor_validity)[0])]
        if intermediates:
            spec_groups.append(pulumi.Output.all(*anchor_pems, *[args.intermediate_certificates[a] for a in intermediates]).apply(
                lambda pems: root_rule_groups(
                    not_after(anchors, list(pems[:len(anchors)]), "trust anchor"), plan.anchor_validity,
                    not_after(intermediates, list(pems[len(anchors):]), "Vault intermediate"),
                    plan.intermediate_validity)[1]))
        if workloads:
            spec_groups.append(pulumi.Output.all(*[args.signed_workloads[w] for w in workloads]).apply(
                lambda pems: signed_workload_rule_group(
                    {w: certificate_not_after(pem, f"workload certificate {w[0]}/{w[1]}")
                     for w, pem in zip(workloads, pems, strict=True)}, plan.workload_renew_before)))
        self.rule = register(f"{name}-rules", prometheus_rule(spec_groups, plan.labels), child)
        self.pod_monitor = register(f"{name}-pod-monitor", plan.pod_monitor, child)
        self.service_monitors = [register(f"{name}-{m['metadata']['name']}", m, child) for m in plan.service_monitors]
        self.register_outputs({"alerts": sorted({r["alert"] for g in plan.rule_groups for r in g["rules"]})})
