"""A shard stack's registrations: its namespaces' policy objects and workload Certificates, one ConfigGroup each, at
the stack's root and under the same names a single stack gives them inside its components.

At the root because that is where `pulumi state move` puts a resource whose parent stays behind (pulumi
pkg/cmd/pulumi/state/state_move.go: re-parented to the destination's root stack, its URN rebuilt): a mesh that
moves from one stack to shards keeps every object, with no alias and no re-create (docs/shards.md).

No `depends_on`: what these objects need (their Namespace, the policy CRDs, the namespace's Issuer) is the platform
stack's, ordered by the contract check (components/platform.py) before anything here is registered.
"""

from __future__ import annotations

from typing import Mapping

import pulumi

from components.authorization import policy_group_name
from components.cert_manager import workload_group_name
from components.k8s import register_group
from plan.mesh import NamespacePlan


def register_shard(namespaces: Mapping[str, NamespacePlan], kubernetes: pulumi.ProviderResource, *,
                   authorization: str, certificates: str) -> dict[str, pulumi.Resource]:
    """Each namespace's groups, by name. `authorization` and `certificates`: the single stack's component names,
    whose group names these repeat."""
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes})
    groups: dict[str, pulumi.Resource] = {}
    for namespace, ns_plan in namespaces.items():
        if ns_plan.policy:
            name = policy_group_name(authorization, namespace)
            groups[name] = register_group(name, ns_plan.policy, on_cluster, after=[], manifest=ns_plan.policy_manifest)
        if ns_plan.certificates:
            name = workload_group_name(certificates, namespace)
            groups[name] = register_group(name, ns_plan.certificates, on_cluster, after=[])
    return groups
