"""MeshAuthorization: registers every graph namespace's policy objects (Servers, authentications,
AuthorizationPolicies, routes, egress, NetworkPolicies; built in authorization.py), from the plan, after the Linkerd
CRDs and the namespace.

One ConfigGroup per namespace: the objects grow with the graph, and one registration each would cost the SDK seconds
per thousand (k8s.register_group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi

from components.k8s import moved_in, register_group


@dataclass
class MeshAuthorizationArgs:
    # Per namespace, its policy objects (namespaces without any get no group), and their manifest as the plan wrote it.
    namespace_objects: Mapping[str, Sequence[dict[str, Any]]]
    namespace_manifests: Mapping[str, str]
    namespaces: Mapping[str, pulumi.Resource]
    policy_crds: pulumi.Resource


def policy_group_name(component: str, namespace: str) -> str:
    """The ConfigGroup of a namespace's policy objects; a shard stack registers it under the same name."""
    return f"{component}-{namespace}"


class MeshAuthorization(pulumi.ComponentResource):
    def __init__(self, name: str, args: MeshAuthorizationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:authorization:MeshAuthorization", name, None, opts)
        self.groups = {
            namespace: register_group(policy_group_name(name, namespace), objects, moved_in(self),
                                      after=[args.policy_crds, args.namespaces[namespace]],
                                      manifest=args.namespace_manifests[namespace])
            for namespace, objects in args.namespace_objects.items() if objects
        }
        self.register_outputs({"objects": sum(len(o) for o in args.namespace_objects.values()),
                               "groups": len(self.groups)})
