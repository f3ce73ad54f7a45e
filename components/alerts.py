"""MeshAlerts: registers the PrometheusRule and the PodMonitor (built in alerts.py) from the plan (plan.AlertsPlan).

Every rule group known from the settings comes from the plan; the expiry groups of the trust anchors, of the Vault
intermediates and (without Vault) of the certificates the program signs are written here, from each certificate's
notAfter once its provider has made it (unknown in a preview until then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi

from plan.alerts import anchor_rule_group, certificate_not_after, intermediate_rule_group, signed_workload_rule_group
from plan.linkerd.alerts import prometheus_rule
from components.k8s import register
from plan.mesh import AlertsPlan


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
        self.rule = register(f"{name}-rules", prometheus_rule(spec_groups, plan.labels), child)
        self.pod_monitor = register(f"{name}-pod-monitor", plan.pod_monitor, child)
        self.register_outputs({"alerts": sorted({r["alert"] for g in plan.rule_groups for r in g["rules"]})})
