"""PreviewAccess: registers the preview identity's admission policy and RBAC (plan/preview_identity.py), the policy
first: the grant that lets the identity's dry-runs reach admission is applied only once the policy that refuses its
other writes is in place, and a namespaced grant only once its namespace exists.
"""

from __future__ import annotations

from typing import Mapping

import pulumi

from components.k8s import register
from plan.preview_identity import PreviewPlan


class PreviewAccess(pulumi.ComponentResource):
    def __init__(self, name: str, plan: PreviewPlan, namespaces: Mapping[str, pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:preview:PreviewAccess", name, None, opts)
        policy, binding = plan.admission
        registered_policy = register(f"{name}-policy", policy, pulumi.ResourceOptions(parent=self))
        self.binding = register(f"{name}-policy-binding", binding,
                                pulumi.ResourceOptions(parent=self, depends_on=[registered_policy]))
        for obj in plan.access:
            namespace = obj["metadata"].get("namespace")
            after = [self.binding, *([namespaces[namespace]] if namespace in namespaces else [])]
            where = f"-{namespace}" if namespace else ""
            register(f"{name}-{obj['kind'].lower()}{where}", obj, pulumi.ResourceOptions(parent=self, depends_on=after))
        self.register_outputs({})
