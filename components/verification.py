"""MeshVerification: registers the canary, its policy and the checks of verification.py from the plan
(plan.VerificationPlan). pulumi-kubernetes waits for each Job to complete and fails the update when one fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi

from components.k8s import register, register_group
from plan.mesh import VerificationPlan


@dataclass
class MeshVerificationArgs:
    plan: VerificationPlan
    policy_crds: pulumi.Resource
    control_plane: Sequence[pulumi.Resource]


class MeshVerification(pulumi.ComponentResource):
    """Registers the canary, its policy and the checks."""

    def __init__(self, name: str, args: MeshVerificationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:verification:MeshVerification", name, None, opts)
        plan = args.plan
        namespace = register(f"{name}-namespace", plan.namespace,
                             pulumi.ResourceOptions(parent=self, depends_on=list(args.control_plane)))
        after_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        accounts = [register(f"{name}-sa-{o['metadata']['name']}", o, after_namespace) for o in plan.service_accounts]
        policy = register_group(f"{name}-policy", plan.policy, pulumi.ResourceOptions(parent=self),
                                after=[args.policy_crds, namespace])
        ready = [namespace, *accounts, policy, *args.control_plane]
        canary = [register(f"{name}-{o['kind'].lower()}-{o['metadata']['name']}", o,
                           pulumi.ResourceOptions(parent=self, depends_on=ready))
                  for o in plan.canary]
        after_canary = pulumi.ResourceOptions(parent=self, depends_on=[*ready, *canary])
        self.jobs = [register(f"{name}-job-{o['metadata']['name']}", o, after_canary) for o in plan.jobs]
        self.cronjobs = [register(f"{name}-cronjob-{o['metadata']['name']}", o, after_namespace)
                         for o in plan.cronjobs]
        self.register_outputs({"jobs": [j["metadata"]["name"] for j in plan.jobs]})
